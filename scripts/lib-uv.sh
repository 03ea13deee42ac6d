# Sourced by scripts/test and scripts/refresh-lock: sets $uv to the pinned uv, installed in .venv-uv with the
# interpreter $1 (uv sync makes each test environment exactly the lock, so uv cannot live inside one of them).
# packaging comes along for the floors script of scripts/test.
UV_VERSION=0.13.9
uv=.venv-uv/bin/uv
if ! { [ -x "$uv" ] && [[ "$("$uv" --version)" == "uv $UV_VERSION "* ]]; }; then
  rm -rf .venv-uv
  "$1" -m venv .venv-uv
  .venv-uv/bin/python -m pip install -q "uv==$UV_VERSION" "packaging==26.4"
fi
# Only the interpreters found on the machine, never one downloaded by uv.
export UV_PYTHON_DOWNLOADS=never
