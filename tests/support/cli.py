"""Assertions shared by the CLI tests."""


def assert_one_line_error(result, *fragments):
    """A non-zero exit whose whole output is one `Error: ...` line naming every fragment, no traceback."""
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
