"""Pass pip's output through, less the notices that read like errors and are not (see setup.sh).

Drops `WARNING: Location ...` lines and setuptools' boxed `BuildBackendWarning` about editable
installs (its first line, the text between the two `!!` lines, and the source line after them).
Everything else, pip's errors included, is kept.
"""

import sys

marks_left = 0  # `!!` lines still to come in the box being dropped
for line in sys.stdin:
    text = line.strip()
    if marks_left:
        marks_left -= text == "!!"
        continue
    if "BuildBackendWarning" in text:
        marks_left = 2
        continue
    if text.startswith("WARNING: Location") or text.startswith("with strategy, WheelFile"):
        continue
    sys.stdout.write(line)
