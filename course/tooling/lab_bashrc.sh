# Shell started by JupyterLab's terminal: the user's usual settings, then the course first on PATH.
[ -f ~/.bashrc ] && . ~/.bashrc
if [ -n "$VIRTUAL_ENV" ]; then
  export PATH="$VIRTUAL_ENV/bin:$PATH"
fi
[ -n "$COURSE_ROOT" ] && cd "$COURSE_ROOT"
echo "FastAPI in Production: 'course list', 'course check 01', 'course hint 01'."
