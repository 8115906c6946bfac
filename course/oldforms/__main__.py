"""``python -m course.oldforms``: print the page, or ``--check`` the probes."""

import sys

from course.oldforms import main

sys.exit(main(sys.argv[1:]))
