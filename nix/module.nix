# The NixOS module: programs.bulkhead. UNBUILT: nix/check parses this file and tests the
# config.toml writer it uses (lib/config.nix), but evaluating the module needs nixpkgs; it has
# not been evaluated or built on a NixOS host yet.
#
# What it does: writes /etc/bulkhead/config.toml from the options (lib/config.nix), builds a
# NixOS guest (kernel, initrd, root image) for every VM without its own `kernel`, installs the
# compositor, the vm-* CLIs and their bash completion, registers the Wayland session, gives
# `user` /dev/kvm, the VMs' tap devices and vfio devices (groups and udev rules; Bulkhead never
# runs as root), creates the tap devices with their host addresses or bridges, NAT for them,
# and binds passed-through PCI devices to vfio-pci at boot and on activation.
{ self, nixpkgs }:
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types literalExpression concatMap filter optional
    optionals unique;
  cfg = config.programs.bulkhead;
  schema = import ./lib/schema.nix;
  system = pkgs.stdenv.hostPlatform.system;

  # Option types from the schema's type tags (lib/schema.nix).
  baseType = t:
    if builtins.isAttrs t then
      (if t ? enum then types.enum t.enum
      else if t ? or then types.either (baseType t.or) (types.submodule { options = optionsOf t.table; })
      else if t ? tables || t ? inline then types.listOf (types.submodule { options = optionsOf (t.tables or t.inline); })
      else if t ? section then types.submodule { options = optionsOf t.section; }
      else throw "schema: unknown type ${builtins.toJSON t}")
    else {
      str = types.str;
      int = types.int;
      bool = types.bool;
      float = types.either types.float types.int;
      path = types.either types.path types.str;
      size = types.either types.str types.ints.positive;
      duration = types.either types.str types.ints.unsigned;
      strs = types.listOf types.str;
      binds = types.attrsOf types.str;
    }.${t};
  isList' = t: t == "strs" || (builtins.isAttrs t && (t ? tables || t ? inline));
  isSection = t: builtins.isAttrs t && t ? section;
  optionsOf = fields: builtins.listToAttrs (map
    (f: {
      name = f.n;
      value =
        if isList' f.t then mkOption { type = baseType f.t; default = [ ]; description = f.d; }
        else if isSection f.t then mkOption { type = baseType f.t; default = { }; description = f.d; }
        else if f.t == "binds" then mkOption { type = baseType f.t; default = { }; description = f.d; }
        else mkOption { type = types.nullOr (baseType f.t); default = null; description = f.d; };
    })
    fields);

  # Module-only options of a VM (never written to config.toml).
  vmExtra = {
    guestPrograms = mkOption {
      type = types.listOf types.package;
      default = [ ];
      example = literalExpression "with pkgs; [ firefox foot ]";
      description = "Packages installed in the VM's NixOS guest (the root image is rebuilt; root changes inside the VM never persist).";
    };
    guestConfig = mkOption {
      type = types.deferredModule;
      default = { };
      description = "NixOS configuration of the VM's guest, merged with Bulkhead's guest module (nix/guest/module.nix).";
    };
  };
  topOptions = optionsOf schema.top;
  vmFields = (builtins.head (filter (f: f.n == "vms") schema.top)).t.tables;

  # The NixOS guest of a VM, unless it brings its own kernel.
  guestOf = vm: import ./guest/image.nix {
    inherit nixpkgs pkgs system;
    name = vm.name;
    guestTools = cfg.guestToolsPackage;
    modules = [ vm.guestConfig { environment.systemPackages = vm.guestPrograms; } ];
  };
  withGuest = vm:
    if vm.kernel != null then vm
    else let g = guestOf vm; in vm // {
      kernel = "${g}/kernel";
      initramfs = if vm.initramfs != null then vm.initramfs else "${g}/initrd";
      rootDisk = if vm.rootDisk != null then vm.rootDisk else "${g}/root.img";
    };
  configText = import ./lib/config.nix (cfg // { vms = map withGuest cfg.vms; });

  nets = concatMap (vm: vm.networks) cfg.vms;
  taps = filter (n: n.type == "tap") nets;
  routedTaps = filter (n: n.hostAddress != null) taps;
  pciAddrs = unique (map (a: if builtins.match "[0-9a-fA-F]{4}:.*" a != null then a else "0000:${a}")
    (concatMap (vm: vm.pci) cfg.vms));
  splitCidr = c: let p = builtins.match "(.*)/([0-9]+)" c; in { address = builtins.elemAt p 0; prefixLength = lib.toInt (builtins.elemAt p 1); };
  isV6 = a: lib.hasInfix ":" a;

  bindVfio = ''
    for dev in ${toString pciAddrs}; do
      d=/sys/bus/pci/devices/$dev
      [ -e "$d" ] || { echo "bulkhead: PCI device $dev is not present" >&2; continue; }
      echo vfio-pci > "$d/driver_override"
      if [ -e "$d/driver" ] && [ "$(basename "$(readlink "$d/driver")")" != vfio-pci ]; then
        echo "$dev" > "$d/driver/unbind"
      fi
      [ -e "$d/driver" ] || echo "$dev" > /sys/bus/pci/drivers_probe
    done
  '';
in
{
  options.programs.bulkhead = topOptions // {
    enable = mkEnableOption "Bulkhead, a Wayland compositor whose windows belong to VM security domains";
    package = mkOption {
      type = types.package;
      default = self.packages.${system}.bulkhead;
      defaultText = literalExpression "bulkhead.packages.\${system}.bulkhead";
      description = "The compositor (bulkhead).";
    };
    vmToolsPackage = mkOption {
      type = types.package;
      default = self.packages.${system}.vm-tools;
      defaultText = literalExpression "bulkhead.packages.\${system}.vm-tools";
      description = "The host VM tools: vm-run, vm-start, vm-stop, vm-shell, vm-list, bulkhead-wl-bridge, bulkhead-term-filter, bulkhead-vm-monitor.";
    };
    guestToolsPackage = mkOption {
      type = types.package;
      default = self.packages.${system}.guest-tools;
      defaultText = literalExpression "bulkhead.packages.\${system}.guest-tools";
      description = "What runs inside each NixOS guest: bulkhead-agent and bulkhead-wl-proxy.";
    };
    user = mkOption {
      type = types.str;
      example = "alice";
      description = "The user who runs the Bulkhead session: gets /dev/kvm, the VMs' tap devices and vfio devices. Bulkhead never runs as root.";
    };
    nat = {
      enable = mkEnableOption "NAT from the tap interfaces that have a hostAddress to externalInterface";
      externalInterface = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "wlp2s0";
        description = "The host's uplink interface the VMs' traffic is NATed to.";
      };
    };
    vfio = {
      ids = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "8086:a0ed" ];
        description = "vendor:device ids bound to vfio-pci by the kernel at boot (vfio-pci.ids=). The VMs' `pci` addresses are bound by address besides.";
      };
      iommu = mkOption {
        type = types.nullOr (types.enum [ "intel" "amd" ]);
        default = null;
        description = "Adds intel_iommu=on or amd_iommu=on (and iommu=pt) to the kernel command line when VMs pass PCI devices through.";
      };
    };
    vms = mkOption {
      type = types.listOf (types.submodule { options = optionsOf vmFields // vmExtra; });
      default = [ ];
      description = (builtins.head (filter (f: f.n == "vms") schema.top)).d;
    };
  };

  config = mkIf cfg.enable {
    assertions = [
      { assertion = !cfg.nat.enable || cfg.nat.externalInterface != null;
        message = "programs.bulkhead.nat.enable needs programs.bulkhead.nat.externalInterface"; }
    ];

    environment.etc."bulkhead/config.toml".text = configText;
    environment.systemPackages = [ cfg.package cfg.vmToolsPackage ]
      ++ optional (builtins.any (vm: vm.vmm != "crosvm") cfg.vms) pkgs.qemu
      ++ optionals (builtins.any (vm: vm.vmm != "qemu") cfg.vms) [ pkgs.crosvm ]
      ++ [ pkgs.virtiofsd pkgs.iproute2 pkgs.passt ];
    # vmm-glue/completions/vm.bash for vm-*, nix/completions/bulkhead.bash for bulkhead.
    programs.bash.completion.enable = lib.mkDefault true;
    environment.pathsToLink = [ "/share/bash-completion" ];

    services.displayManager.sessionPackages = [ cfg.package ];
    security.polkit.enable = true; # libseat via logind for the DRM session
    hardware.graphics.enable = lib.mkDefault true;

    users.groups.bulkhead = { };
    users.users.${cfg.user}.extraGroups = [ "kvm" "bulkhead" ];
    boot.kernelModules = [ "kvm-intel" "kvm-amd" "vhost_vsock" "vhost_net" "tun" ];
    services.udev.extraRules = ''
      KERNEL=="kvm", GROUP="kvm", MODE="0660"
      KERNEL=="vhost-vsock", GROUP="bulkhead", MODE="0660"
      KERNEL=="vhost-net", GROUP="bulkhead", MODE="0660"
      SUBSYSTEM=="vfio", GROUP="bulkhead", MODE="0660"
    '';

    # Tap devices owned by the user, with their host address or in their bridge, so the user's
    # VMM opens them without privileges.
    networking.interfaces = builtins.listToAttrs (map
      (t: {
        name = t.name;
        value = {
          virtual = true;
          virtualType = "tap";
          virtualOwner = cfg.user;
        } // lib.optionalAttrs (t.hostAddress != null) (
          let a = splitCidr t.hostAddress; in
          if isV6 a.address then { ipv6.addresses = [ a ]; } else { ipv4.addresses = [ a ]; });
      })
      taps);
    networking.bridges = lib.mkMerge (map
      (t: { ${t.bridge}.interfaces = [ t.name ]; })
      (filter (t: t.bridge != null) taps));
    networking.nat = mkIf cfg.nat.enable {
      enable = true;
      externalInterface = cfg.nat.externalInterface;
      internalInterfaces = map (t: t.name) routedTaps;
    };

    # PCI passthrough: vfio-pci claims the devices before their usual drivers (initrd), and again
    # on every activation (a device added to a VM later, or rebound by hand).
    boot.initrd.kernelModules = optionals (pciAddrs != [ ] || cfg.vfio.ids != [ ])
      [ "vfio_pci" "vfio" "vfio_iommu_type1" ];
    boot.kernelParams = optionals (cfg.vfio.ids != [ ]) [ "vfio-pci.ids=${lib.concatStringsSep "," cfg.vfio.ids}" ]
      ++ optionals (cfg.vfio.iommu != null) [ "${cfg.vfio.iommu}_iommu=on" "iommu=pt" ];
    boot.initrd.preDeviceCommands = mkIf (pciAddrs != [ ]) ''
      for dev in ${toString pciAddrs}; do
        [ -e /sys/bus/pci/devices/$dev ] && echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override
      done
    '';
    system.activationScripts.bulkhead-vfio = mkIf (pciAddrs != [ ]) bindVfio;
  };
}
