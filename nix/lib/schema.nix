# The schema of Bulkhead's config.toml as Nix data, in the order the file is written.
# Pure (builtins only): nix/lib/config.nix turns option values into TOML with it, and
# nix/module.nix declares `programs.bulkhead` options (types and descriptions) from it, so the
# two cannot drift apart. It mirrors compositor/config/src/{lib,vm,desktop}.rs; nix/check tests
# that the full sample in nix/tests/ sets every field listed here.
#
# A field: { n = Nix name (camelCase); t = type; d = description; toml = key (default: n in
# kebab-case); }. Types:
#   "str" "int" "bool" "float" "path"  scalars ("path": a string; relative to the config file)
#   "size"      "2G", "512M" or an integer of MiB
#   "duration"  "30s", "15m", "2h" or an integer of seconds
#   "strs"      a list of strings
#   { enum = [ ... ]; }               one of these strings
#   { or = "bool" | enum; table = [ fields ]; }   a value or an inline table `{ k = v }`
#   { tables = [ fields ]; }          a list of attrsets: `[[key]]` arrays of tables
#   { inline = [ fields ]; }          a list of attrsets: an array of inline tables
#   { section = [ fields ]; }         an attrset: a `[key]` table
#   "binds"                           an attrset of strings whose keys are written verbatim
let
  f = n: t: d: { inherit n t d; };
  fk = n: toml: t: d: { inherit n toml t d; };

  app = [
    (f "name" "str" "Name shown in the launcher (at most 64 characters).")
    (f "command" "strs" "The command line, one list element per argument, e.g. [ \"firefox\" ].")
    (f "icon" "str" "Icon name or path shown in the launcher.")
  ];

  network = [
    (f "type" { enum = [ "user" "tap" "switch" ]; } ''
      What the interface attaches to: "user" (user-mode networking, internet without root),
      "tap" (a host tap device with a host address or in a bridge), "switch" (a port on a
      bulkhead-switch VM network).'')
    (f "name" "str" "type = \"tap\": the host tap device (1 to 15 characters, e.g. \"vm-work0\").")
    (f "hostAddress" "str" ''
      type = "tap": the host's address on the tap, with prefix length (e.g. "10.10.0.1/24").
      Exclusive with bridge.'')
    (f "bridge" "str" "type = \"tap\": the host bridge the tap joins. Exclusive with hostAddress.")
    (f "network" "str" "type = \"switch\": the VM network's name (lowercase letters, digits, '-').")
    (f "role" { enum = [ "router" "client" ]; } ''
      type = "switch": "router" (one per network, sees every client) or "client" (talks only to
      the router; the default).'')
    (f "mac" "str" "The interface's MAC address (default: derived from the VM name and position).")
    (f "address" "str" "The guest's address with prefix length, e.g. \"10.20.0.2/24\" (user: 10.0.2.15/24).")
    (f "gateway" "str" "The guest's default gateway on this interface.")
    (f "routes" { inline = [
        (f "to" "str" "Destination network with prefix length.")
        (f "via" "str" "The next hop's address.")
      ]; } "Extra routes: a list of { to = \"10.30.0.0/24\"; via = \"10.20.0.1\"; }.")
    (f "nameservers" "strs" "DNS servers the guest uses.")
  ];

  vm = [
    (f "name" "str" "The VM's name: 1 to 32 lowercase letters, digits and '-', starting with a letter; not \"host\".")
    (f "color" "str" "Frame colour of the VM's windows, \"#rrggbb\".")
    (f "memory" "size" "Guest memory: \"2G\", \"512M\" or an integer of MiB (Bulkhead's default: 1G).")
    (f "cpus" "int" "Virtual CPUs, 1 to 256 (default: 2).")
    (f "vmm" { enum = [ "auto" "crosvm" "qemu" ]; } "The VMM: \"auto\" (crosvm when installed, else QEMU), \"crosvm\" or \"qemu\".")
    (f "kernel" "path" "Guest kernel (default with the NixOS module: the kernel of the VM's NixOS guest).")
    (f "initramfs" "path" "Guest initramfs (default with the NixOS module: the NixOS guest's).")
    (f "rootDisk" "path" "Root disk image, always read-only to the guest (default with the NixOS module: the NixOS guest's).")
    (f "rootOverlay" { or = { enum = [ "disk" "tmpfs" ]; }; table = [
        (f "type" { enum = [ "disk" "tmpfs" ]; } "\"disk\" (a scratch disk made at each start) or \"tmpfs\" (guest memory).")
        (f "size" "size" "Size of the scratch disk (default 2G); not for tmpfs.")
      ]; } ''
      Where root changes go (they never persist): "disk", "tmpfs" or { type = "disk"; size = "4G"; }.'')
    (f "kernelParams" "strs" "Extra guest kernel parameters, one per element, no spaces; not \"bulkhead.*\".")
    (f "autostart" "bool" "Start the VM with the session.")
    (f "dependsOn" "strs" "VMs started before this one (a network's router, say).")
    (f "disposable" "bool" "No home and no writable disk: the VM forgets everything at stop.")
    (f "logLevel" { enum = [ "error" "warn" "info" "debug" "trace" ]; } "How much the VM's VMM and console log (default: info).")
    (f "idleInhibit" "bool" "Let the VM's apps keep the screen awake while their window is visible (default true).")
    (f "extraArgs" "strs" "Arguments appended to the VMM's command line.")
    (f "gpu" { or = "bool"; table = [
        (f "enable" "bool" "Give the guest a virtio-gpu.")
        (f "contextTypes" "strs" "crosvm --gpu context-types: cross-domain, virgl, virgl2, venus, gfxstream.")
        (f "transport" { enum = [ "auto" "cross-domain" "vsock" ]; } "How guest Wayland reaches the VM's socket: auto (cross-domain when the VMM has it, the default), cross-domain or vsock.")
      ]; } "The guest GPU: true (cross-domain, the default), false, or { enable; contextTypes; transport; }.")
    (f "sound" { or = "bool"; table = [
        (f "playback" "bool" "Guest audio output (default true in a table).")
        (f "capture" "bool" "Guest microphone access (default false).")
      ]; } "Sound: false (the default), true (playback only) or { playback; capture; }.")
    (f "autoShutdown" { or = "bool"; table = [
        (f "enable" "bool" "Stop the VM when nothing has run in it for `after`.")
        (f "after" "duration" "Idle time before the stop (default 15m).")
      ]; } "Stop the VM after it has been idle: false (the default), true (after 15m) or { enable; after; }.")
    (f "home" { or = "bool"; table = [
        (f "enable" "bool" "Give the VM a persistent home.")
        (f "path" "path" "Host directory of the home (default $XDG_DATA_HOME/bulkhead/vms/<vm>/home).")
        (f "template" "path" "Directory copied into a new home on first start.")
      ]; } "The persistent home over virtiofs: true (the default unless disposable), false, or { path; template; }.")
    (f "pci" "strs" "PCI devices passed through with vfio, e.g. [ \"0000:03:00.0\" ]; the module binds them to vfio-pci.")
    (f "cid" "int" "The guest's vsock context id (at least 3; default 3 + the VM's position).")
    (fk "shares" "share" { tables = [
        (f "tag" "str" "The virtiofs tag (1 to 36 letters, digits, '-', '_'; not \"home\").")
        (f "path" "path" "The host directory (no ',' or ':').")
        (f "mount" "str" "Where the guest mounts it (default /mnt/<tag>).")
        (f "readOnly" "bool" "Share read-only.")
        (f "uidMap" "strs" "uid mappings \"GUEST:HOST:COUNT\".")
        (f "gidMap" "strs" "gid mappings \"GUEST:HOST:COUNT\".")
      ]; } "Host directories shared with the guest over virtiofs.")
    (fk "disks" "disk" { tables = [
        (f "path" "path" "The disk image.")
        (f "readOnly" "bool" "Attach read-only (required for a disposable VM).")
      ]; } "Additional disks (what persists besides the home).")
    (fk "networks" "network" { tables = network; } "Network interfaces, in order.")
    (fk "vhostUser" "vhost-user" { tables = [
        (f "type" { enum = [ "net" "block" "fs" "sound" "gpu" "console" "rng" "vsock" "input" ]; } "The virtio device type.")
        (f "socket" "path" "The vhost-user backend's socket.")
      ]; } "vhost-user devices served by external backends.")
    (fk "apps" "app" { tables = app; } "Apps of this VM in the launcher.")
  ];
in
{
  # Module-only option names (not written to config.toml), per level; config.nix skips them.
  moduleOnly = {
    top = [ "enable" "package" "vmToolsPackage" "guestToolsPackage" "user" "nat" "vfio" ];
    vm = [ "guestPrograms" "guestConfig" ];
  };

  top = [
    (fk "vms" "vm" { tables = vm; } "The VM security domains, in order (the order gives default vsock CIDs).")
    (f "vmm" { section = [
        (f "qemu" "str" "The QEMU binary (default qemu-system-x86_64).")
        (f "crosvm" "str" "The crosvm binary (default crosvm).")
        (f "accel" { enum = [ "auto" "kvm" "tcg" ]; } "Acceleration: \"auto\" (KVM when /dev/kvm works), \"kvm\" or \"tcg\".")
        (f "stopTimeout" "duration" "Time a guest gets to power off before it is killed (default 20s).")
        (f "startTimeout" "duration" "Time for the guest agent to answer at start (default 2m).")
      ]; } "Settings for every VM ([vmm]).")
    (f "keyboard" { section = [
        (f "layout" "str" "XKB layout, e.g. \"us\" or \"de,us\".")
        (f "variant" "str" "XKB variant.")
        (f "options" "str" "XKB options, e.g. \"ctrl:nocaps\".")
        (f "model" "str" "XKB model.")
        (f "rules" "str" "XKB rules.")
        (f "repeatRate" "int" "Key repeats per second; 0 disables repeat (default 25).")
        (f "repeatDelay" "int" "Milliseconds before a held key repeats (default 600).")
      ]; } "Keyboard layout and repeat ([keyboard]).")
    (f "appearance" { section = [
        (f "borderWidth" "int" "Frame width in pixels, 1 to 32 (default 4).")
        (f "titleHeight" "int" "Title bar height in pixels, 16 to 64 (default 24).")
        (f "hostColor" "str" "Frame colour of host windows, \"#rrggbb\".")
        (f "background" "str" "Desktop background colour, \"#rrggbb\".")
      ]; } "What the compositor draws ([appearance]).")
    (f "clipboard" { section = [
        (f "maxSize" "size" "The most one copy takes, all types together (1K to 1G; default 16M).")
        (f "timeout" "duration" "How long the source has to hand its data over (1s to 10m; default 5s).")
        (f "keepAfterPaste" "bool" "Keep the global clipboard's contents after a paste (default false, as Qubes).")
      ]; } "The two-level clipboard ([clipboard]).")
    (f "session" { section = [
        (f "autostart" "strs" "Host command lines (run with sh -c) started with the session.")
        (f "lock" "str" "The lock command, e.g. \"swaylock -f\".")
        (f "idleLock" "duration" "Run the lock command after this long without input (needs lock).")
        (f "dpms" "duration" "Blank the monitors after this long without input.")
        (f "xwayland" "bool" "Run Xwayland for host X11 apps (default: when it is installed).")
        (f "exportEnvironment" "bool" "Export WAYLAND_DISPLAY & co. to systemd and D-Bus (default: on the DRM backend).")
        (f "launchFocus" "duration" "How long a launched VM app's first window may still take the keyboard (default 120s, at most 1h).")
        (f "renderer" { enum = [ "auto" "pixman" ]; } "How the DRM session draws: \"auto\" (GLES when the GPU's EGL works, else pixman) or \"pixman\" (always on the CPU).")
      ]; } "What the session starts and when it locks ([session]).")
    (fk "outputs" "output" { tables = [
        (f "name" "str" "Connector name, e.g. \"DP-1\".")
        (f "enable" "bool" "Light this output up (default true).")
        (f "mode" "str" "\"WIDTHxHEIGHT\" or \"WIDTHxHEIGHT@HZ\" (default: the preferred mode).")
        (f "position" "str" "\"X,Y\" in logical pixels.")
        (f "scale" "float" "Scale factor, 0.5 to 4.")
        (f "transform" { enum = [ "normal" "90" "180" "270" "flipped" "flipped-90" "flipped-180" "flipped-270" ]; } "Rotation and flip.")
      ]; } "Monitor settings by connector name ([[output]]).")
    (fk "inputs" "input" { tables = [
        (f "match" "str" "\"type:keyboard\", \"type:pointer\", \"type:touchpad\", \"type:touch\" or an exact device name.")
        (f "tap" "bool" "Tap to click.")
        (f "naturalScroll" "bool" "Natural (reversed) scrolling.")
        (f "leftHanded" "bool" "Swap the buttons.")
        (f "disableWhileTyping" "bool" "Ignore the touchpad while typing.")
        (f "accelSpeed" "float" "Pointer acceleration, -1 (slowest) to 1.")
        (f "disabled" "bool" "Ignore the device entirely.")
      ]; } "Input device settings, applied in order ([[input]]).")
    (fk "apps" "app" { tables = app; } "Host apps in the launcher ([[app]]).")
    (f "headless" { section = [
        (f "outputs" "int" "Number of headless outputs, 1 to 8.")
        (f "width" "int" "Width in pixels.")
        (f "height" "int" "Height in pixels.")
        (f "refresh" "int" "Frames per second.")
        (f "scale" "float" "Scale factor, 0.5 to 4.")
      ]; } "Outputs of --backend headless (tests, screenshots) ([headless]).")
    (f "binds" "binds" ''
      Key bindings: { "Super+Return" = "spawn foot"; }; "none" removes a default binding.'')
  ];
}
