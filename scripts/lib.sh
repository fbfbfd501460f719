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

# port_busy PORT: some local TCP socket holds PORT, listening or not. A connected socket is
# invisible to port_open yet still makes a listener's bind fail, so ss is asked when present.
port_busy() {
  if command -v ss >/dev/null 2>&1; then
    [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ] && return 0
  fi
  port_open 127.0.0.1 "$1"
}

# free_ports START N: prints the first port P >= START with P..P+N-1 all free (steps of 10).
free_ports() {
  local p=$1 n=$2 i busy
  for ((; p < 65000; p += 10)); do
    busy=0
    for ((i = 0; i < n; i++)); do port_busy $((p + i)) && { busy=1; break; }; done
    [ $busy = 0 ] && { echo "$p"; return 0; }
  done
  return 1
}

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
