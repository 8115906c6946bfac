"""What runs the course: the `course` command line, the JupyterLab launcher, the notebook
runner and `make test`."""
