"""The command line: ``main`` holds the click group, one module per command group, ``common`` what they share."""
