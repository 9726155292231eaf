# Bulkhead's NixOS guest: what every VM image built by the module runs. UNBUILT (parse-checked
# only). It follows the boot protocol of rootfs/guest/{init,rc}: the root disk (virtio serial
# bh-root) is mounted read-only under an overlay whose upper layer is the per-start scratch disk
# (bh-scratch) or tmpfs (bulkhead.overlay=), and bulkhead.name/net/route/dns/share= on the
# kernel command line say what the host configured.
{ guestTools }:
{ config, lib, pkgs, modulesPath, ... }:
{
  imports = [ "${modulesPath}/profiles/minimal.nix" "${modulesPath}/profiles/qemu-guest.nix" ];

  boot.loader.grub.enable = false;
  boot.initrd.availableKernelModules = [ "virtio_pci" "virtio_mmio" "virtio_blk" "virtio_net" "ext4" "overlay" ];
  boot.initrd.kernelModules = [ "overlay" "virtio_blk" "ext4" ];
  boot.kernelModules = [ "vsock" "vmw_vsock_virtio_transport" "virtiofs" "virtio_gpu" ];
  # Stage 1 mounts the lower (read-only root) and upper (scratch or tmpfs) layers; "/" is their
  # overlay. udev names the disks by serial: /dev/disk/by-id/virtio-bh-root.
  boot.initrd.postDeviceCommands = ''
    overlay=disk
    for arg in $(cat /proc/cmdline); do
      case "$arg" in bulkhead.overlay=*) overlay=''${arg#bulkhead.overlay=} ;; esac
    done
    mkdir -p /bulkhead/lower /bulkhead/upper
    mount -t ext4 -o ro /dev/disk/by-id/virtio-bh-root /bulkhead/lower
    if [ "$overlay" = tmpfs ]; then
      mount -t tmpfs -o mode=0755 upper /bulkhead/upper
    else
      mount -t ext4 /dev/disk/by-id/virtio-bh-scratch /bulkhead/upper
    fi
    mkdir -p /bulkhead/upper/upper /bulkhead/upper/work
  '';
  fileSystems."/" = {
    device = "overlay";
    fsType = "overlay";
    options = [ "lowerdir=/bulkhead/lower" "upperdir=/bulkhead/upper/upper" "workdir=/bulkhead/upper/work" ];
  };

  networking.useDHCP = false;
  networking.hostName = lib.mkDefault "";
  nix.enable = false;
  documentation.enable = false;
  services.getty.autologinUser = lib.mkDefault null;

  users.users.user = { isNormalUser = true; uid = 1000; home = "/home/user"; };

  # bulkhead.* kernel parameters -> hostname, addresses, routes, DNS, virtiofs mounts.
  systemd.services.bulkhead-guest-setup = {
    description = "Bulkhead guest setup from the kernel command line";
    wantedBy = [ "multi-user.target" ];
    before = [ "bulkhead-agent.service" "network.target" ];
    serviceConfig = { Type = "oneshot"; RemainAfterExit = true; };
    path = [ pkgs.iproute2 pkgs.util-linux pkgs.coreutils pkgs.hostname ];
    script = ''
      : > /etc/resolv.conf
      for arg in $(cat /proc/cmdline); do
        case "$arg" in
          bulkhead.name=*) hostname "''${arg#bulkhead.name=}" ;;
          bulkhead.net=*)
            IFS=, read -r mac addr gw <<< "''${arg#bulkhead.net=}"
            for i in /sys/class/net/*; do
              if [ "$(cat "$i/address")" = "$mac" ]; then
                dev=''${i##*/}
                ip addr add "$addr" dev "$dev"; ip link set "$dev" up
                if [ -n "$gw" ]; then ip route add default via "$gw" dev "$dev"; fi
              fi
            done ;;
          bulkhead.route=*) IFS=, read -r dest via <<< "''${arg#bulkhead.route=}"; ip route add "$dest" via "$via" ;;
          bulkhead.dns=*) echo "nameserver ''${arg#bulkhead.dns=}" >> /etc/resolv.conf ;;
          bulkhead.share=*)
            IFS=, read -r tag dir mode <<< "''${arg#bulkhead.share=}"
            mkdir -p "$dir"
            mount -t virtiofs -o "''${mode:-rw}" "$tag" "$dir" || echo "cannot mount share $tag on $dir"
            if [ "$tag" = home ]; then chown user:users "$dir"; fi ;;
        esac
      done
    '';
  };
  environment.etc."resolv.conf".enable = false;

  # The agent: runs vm-run's commands as `user`, reports activity, powers off on request.
  systemd.services.bulkhead-agent = {
    description = "Bulkhead guest agent";
    wantedBy = [ "multi-user.target" ];
    after = [ "bulkhead-guest-setup.service" ];
    serviceConfig = {
      ExecStart = "${guestTools}/bin/bulkhead-agent --user user";
      Restart = "always";
    };
  };
  # The Wayland proxy: guest apps connect to /run/user/1000/wayland-0.
  systemd.services.bulkhead-wl-proxy = {
    description = "Bulkhead Wayland proxy";
    wantedBy = [ "multi-user.target" ];
    after = [ "bulkhead-guest-setup.service" ];
    environment = { XDG_RUNTIME_DIR = "/run/user/1000"; HOME = "/home/user"; };
    serviceConfig = {
      User = "user";
      RuntimeDirectory = "user/1000";
      RuntimeDirectoryPreserve = true;
      ExecStart = "${guestTools}/bin/bulkhead-wl-proxy";
      Restart = "always";
    };
  };
  environment.sessionVariables = { WAYLAND_DISPLAY = "wayland-0"; XDG_SESSION_TYPE = "wayland"; };
  hardware.graphics.enable = lib.mkDefault true;
  system.stateVersion = lib.mkDefault "24.11";
}
