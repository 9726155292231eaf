# The guest user's session environment: the Wayland proxy's socket and runtime dir.
if [ "$(id -u)" = 1000 ]; then
  export XDG_RUNTIME_DIR=/run/user/1000
  export WAYLAND_DISPLAY=wayland-0
  # Toolkits: Wayland first, X11 second (the values hold ';', so no sourcing).
  if [ -r /etc/bulkhead/session.env ]; then
    while IFS= read -r line; do
      case $line in ''|'#'*) ;; *=*) export "$line" ;; esac
    done < /etc/bulkhead/session.env
  fi
fi
