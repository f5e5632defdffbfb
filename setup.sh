#!/usr/bin/env bash
# One command per job on a fresh machine:
#   bash setup.sh app [--host H --port P --share]   install the runtime and start the web app
#   bash setup.sh test [pytest args]                  install everything and run the test suite
set -euo pipefail
cd "$(dirname "$0")"
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
# quiet the local-index warnings, but let a failed install stop the script (pipefail)
pip_install() { pip install --disable-pip-version-check -q "$@" 2>&1 | { grep -v "is ignored" || true; }; }
case "${1:-}" in
  app)
    pip_install -e .
    shift; exec python app.py "$@" ;;
  test)
    pip_install -e ".[train,test]"
    # Debian packages the tests need: chromium for the browser test, a C++ compiler for torch.compile
    # (the trainer's compiled instance norm; a new machine normally has g++ already)
    missing=""
    [ -x /usr/bin/chromium ] || missing="chromium chromium-driver"
    command -v g++ > /dev/null || missing="$missing g++"
    if [ -n "$missing" ]; then
      SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
      ($SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing) \
        > /tmp/stylenet-apt.log 2>&1 || echo "warning: could not install ${missing# } (see /tmp/stylenet-apt.log)"
    fi
    shift; exec python -m pytest -q "$@" tests ;;
  *)
    echo "usage: bash setup.sh app|test [args]" >&2; exit 2 ;;
esac
