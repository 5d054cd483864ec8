"""The model store: versioned bundles sealed by a sha256 manifest, and aliases that point at them.

``versions`` names and allocates versions; ``bundle`` hashes, seals and verifies one bundle;
``aliases`` switches and rolls back production/challenger; ``catalog`` opens and lists bundles;
``artifacts`` is the one reader (and writer) of a trained pair's files. Import the submodule you
need: this package imports nothing itself, so the light ones stay light.
"""
