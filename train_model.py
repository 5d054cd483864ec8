"""Thin Click entry point; the implementation arrives with the Models issue."""

import sys

if __name__ == "__main__":
    sys.exit(f"{sys.argv[0]}: not available yet (see the Models issue)")
