# Shared by the *-up.sh / *-down.sh scripts: where things are cached and run, and port waits.
# Sourced, not executed.
MAILPIPE_CACHE=${MAILPIPE_CACHE:-$HOME/.cache/mailpipe}
MAILPIPE_RUN=${MAILPIPE_RUN:-$MAILPIPE_CACHE/run}
mkdir -p "$MAILPIPE_CACHE" "$MAILPIPE_RUN"

# wait_port HOST PORT SECONDS: returns 0 once something listens on HOST:PORT.
wait_port() {
  local host=$1 port=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  return 1
}

# port_open HOST PORT: one probe, no wait.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# apt_install PKG...: installs the Debian packages that are missing (root, as on CI).
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt)" >&2
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
