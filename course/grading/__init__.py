"""What grades: the check-suite toolkit (checking), the grader, known mistakes and hints.

    checking.py  expect / Unmet / require (the checks) and Driver / run_driver (the learner's code, in a subprocess)
    grader.py    run a module's checks against a folder; format the result for the learner
    mistakes.py  known wrong answers, made from the solution by exact edits
    hints.py     progressive hints per TODO, from checks/NN_topic/HINTS.md
"""
