"""Keeps pytest away from the demo suites: the notebook runs them on copies, and one of them
fails on purpose. (This file plays no part in the lesson.)"""

collect_ignore_glob = ["suite_*"]
