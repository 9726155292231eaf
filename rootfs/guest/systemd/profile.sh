# The guest user's session environment: the Wayland proxy's socket and runtime dir.
if [ "$(id -u)" = 1000 ]; then
  export XDG_RUNTIME_DIR=/run/user/1000
  export WAYLAND_DISPLAY=wayland-0
fi
