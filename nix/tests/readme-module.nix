# bulkhead.nix: the NixOS module of docs/session.md's "For NixOS users" section, verbatim.
# nix/check turns its programs.bulkhead into config.toml (compared with readme-module.toml)
# and runs `bulkhead validate` on it.
{ pkgs, ... }:
{
  programs.bulkhead = {
    enable = true;
    user = "alice"; # gets /dev/kvm, the VMs' tap devices and vfio devices; Bulkhead never runs as root
    nat = { enable = true; externalInterface = "wlp2s0"; };

    vms = [
      {
        # Owns the uplink: a tap with a host address (NATed to wlp2s0), and routes the
        # "office" switch network for the VMs behind it.
        name = "router";
        color = "#ff8800";
        memory = "512M";
        autostart = true;
        gpu = false;
        home = false;
        networks = [
          { type = "tap"; name = "vm-router0"; hostAddress = "10.10.0.1/24"; address = "10.10.0.2/24"; gateway = "10.10.0.1"; nameservers = [ "10.10.0.1" ]; }
          { type = "switch"; network = "office"; role = "router"; address = "10.20.0.1/24"; }
        ];
        guestConfig = { boot.kernel.sysctl."net.ipv4.ip_forward" = 1; };
      }
      {
        name = "work";
        color = "#3060ff";
        memory = "4G";
        cpus = 4;
        dependsOn = [ "router" ];
        networks = [ { type = "switch"; network = "office"; address = "10.20.0.2/24"; gateway = "10.20.0.1"; nameservers = [ "10.20.0.1" ]; } ];
        shares = [ { tag = "projects"; path = "/home/alice/projects"; mount = "/home/user/projects"; } ];
        guestPrograms = with pkgs; [ firefox foot ];
        apps = [
          { name = "Firefox"; command = [ "firefox" ]; }
          { name = "Terminal"; command = [ "foot" ]; }
        ];
      }
      {
        name = "banking";
        color = "#2ecc71";
        networks = [ { type = "user"; } ];
        autoShutdown = { enable = true; after = "30m"; };
        guestPrograms = with pkgs; [ firefox ];
        apps = [ { name = "Bank"; command = [ "firefox" "https://bank.example" ]; } ];
      }
      {
        name = "browse";
        color = "#c0392b";
        disposable = true;
        rootOverlay = "tmpfs";
        autoShutdown = true;
        networks = [ { type = "user"; } ];
        guestPrograms = with pkgs; [ firefox ];
        apps = [ { name = "Private browser"; command = [ "firefox" "--private-window" ]; } ];
      }
      {
        # A USB controller passed through: bound to vfio-pci at boot, owned by alice.
        name = "usb";
        color = "#8e44ad";
        pci = [ "0000:00:14.0" ];
        vmm = "crosvm";
      }
    ];

    keyboard = { layout = "us"; };
    session = { autostart = [ "waybar" ]; lock = "swaylock -f"; idleLock = "10m"; };
    outputs = [ { name = "eDP-1"; scale = 1.5; } ];
    inputs = [ { match = "type:touchpad"; tap = true; naturalScroll = true; } ];
    binds = { "Super+Return" = "spawn foot"; };
  };
}
