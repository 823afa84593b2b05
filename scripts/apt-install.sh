# Sourced by the test scripts: `apt_install WHAT PACKAGE...` installs Debian packages (as root,
# or through sudo), saying what for.
apt_install() {
  local what=$1
  shift
  echo "installing $what: $*" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
