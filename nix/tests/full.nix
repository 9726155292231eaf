# Every option of the schema (nix/check fails if one is missing here): networks of each type,
# shares, disks, PCI, vhost-user, apps, outputs, inputs, every [section]; both forms of the
# options that take a boolean or a table; sizes and durations as strings and as integers.
{
  vms = [
    {
      name = "router";
      color = "#ff8800";
      memory = 512;
      cpus = 1;
      vmm = "qemu";
      rootOverlay = "tmpfs";
      gpu = false;
      sound = true;
      autoShutdown = false;
      home = false;
      autostart = true;
      networks = [
        { type = "tap"; name = "vm-router0"; hostAddress = "10.10.0.1/24"; address = "10.10.0.2/24"; gateway = "10.10.0.1"; nameservers = [ "10.10.0.1" ]; }
        { type = "switch"; network = "office"; role = "router"; address = "10.20.0.1/24"; }
      ];
    }
    {
      name = "work";
      color = "#3060ff";
      memory = "4G";
      cpus = 4;
      vmm = "crosvm";
      kernel = "/nix/store/00000000000000000000000000000000-guest-work/bzImage";
      initramfs = "/nix/store/00000000000000000000000000000000-guest-work/initrd";
      rootDisk = "/nix/store/00000000000000000000000000000000-guest-work/root.img";
      rootOverlay = { type = "disk"; size = "4G"; };
      kernelParams = [ "quiet" "loglevel=3" ];
      autostart = false;
      dependsOn = [ "router" ];
      disposable = false;
      logLevel = "debug";
      idleInhibit = false;
      extraArgs = [ "--disable-sandbox" ];
      gpu = { enable = true; contextTypes = [ "cross-domain" "virgl2" ]; transport = "auto"; };
      sound = { playback = true; capture = false; };
      autoShutdown = { enable = true; after = "30m"; };
      home = { enable = true; path = "/home/alice/vms/work"; template = "/etc/skel"; };
      pci = [ "0000:03:00.0" "04:00.1" ];
      cid = 42;
      shares = [
        { tag = "projects"; path = "/srv/projects"; mount = "/home/user/projects"; readOnly = false; uidMap = [ "1000:1000:1" ]; gidMap = [ "100:100:1" ]; }
        { tag = "docs"; path = "/srv/docs"; readOnly = true; }
      ];
      disks = [ { path = "disks/work-data.img"; readOnly = false; } ];
      networks = [
        { type = "user"; }
        {
          type = "switch";
          network = "office";
          role = "client";
          mac = "02:00:00:00:20:02";
          address = "10.20.0.2/24";
          gateway = "10.20.0.1";
          routes = [ { to = "10.30.0.0/24"; via = "10.20.0.1"; } { to = "fd00:30::/64"; via = "fd00:20::1"; } ];
          nameservers = [ "10.20.0.1" "fd00:20::1" ];
        }
        { type = "tap"; name = "vm-work0"; bridge = "br0"; }
      ];
      vhostUser = [ { type = "rng"; socket = "/run/bulkhead/work-rng.sock"; } ];
      apps = [
        { name = "Firefox"; command = [ "firefox" "--new-window" ]; icon = "firefox"; }
        { name = "Terminal"; command = [ "foot" ]; }
      ];
      # Module-only: they build the guest image, and are never written to config.toml.
      guestPrograms = [ "firefox" ];
      guestConfig = { services.openssh.enable = false; };
    }
    {
      name = "browse";
      color = "#c0392b";
      disposable = true;
      rootOverlay = { type = "tmpfs"; };
      autoShutdown = true;
      disks = [ { path = "/srv/iso/tools.img"; readOnly = true; } ];
      networks = [ { type = "user"; } ];
      apps = [ { name = "Browser"; command = [ "firefox" "--private-window" ]; } ];
    }
  ];
  vmm = {
    qemu = "/run/current-system/sw/bin/qemu-system-x86_64";
    crosvm = "crosvm";
    accel = "kvm";
    stopTimeout = 30;
    startTimeout = "3m";
  };
  keyboard = {
    layout = "de,us";
    variant = "nodeadkeys";
    options = "ctrl:nocaps,grp:alt_shift_toggle";
    model = "pc105";
    rules = "evdev";
    repeatRate = 30;
    repeatDelay = 250;
  };
  appearance = { borderWidth = 6; titleHeight = 28; hostColor = "#404040"; background = "#101014"; };
  clipboard = { maxSize = "64M"; timeout = "10s"; keepAfterPaste = true; };
  session = {
    autostart = [ "waybar" "mako" ];
    lock = "swaylock -f";
    idleLock = "10m";
    dpms = 900;
    xwayland = false;
    exportEnvironment = true;
    launchFocus = "90s";
    renderer = "pixman";
  };
  outputs = [
    { name = "DP-1"; mode = "2560x1440@143.97"; position = "0,0"; scale = 1.5; transform = "normal"; }
    { name = "DP-2"; mode = "1920x1080"; position = "1707,0"; scale = 1; transform = "90"; }
    { name = "HDMI-A-1"; enable = false; }
  ];
  inputs = [
    { match = "type:touchpad"; tap = true; naturalScroll = true; disableWhileTyping = true; accelSpeed = 0.25; }
    { match = "Logitech USB Receiver Mouse"; leftHanded = true; accelSpeed = -1; }
    { match = "type:touch"; disabled = true; }
  ];
  apps = [ { name = "Terminal"; command = [ "foot" ]; icon = "utilities-terminal"; } ];
  headless = { outputs = 2; width = 1920; height = 1080; refresh = 30; scale = 1.25; };
  binds = { "Super+Return" = "spawn foot"; "Super+Q" = "none"; };
  # Module-only options are skipped by the writer.
  enable = true;
  user = "alice";
}
