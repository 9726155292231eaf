# Builds one VM's NixOS guest into what Bulkhead boots: $out/kernel, $out/initrd and
# $out/root.img (ext4 holding the system's closure, /init -> the system's stage 2; the VMM
# attaches it read-only). UNBUILT (parse-checked only).
{ nixpkgs, pkgs, system, name, guestTools, modules }:
let
  guest = nixpkgs.lib.nixosSystem {
    inherit system;
    modules = [ (import ./module.nix { inherit guestTools; }) { networking.hostName = name; } ] ++ modules;
  };
  top = guest.config.system.build.toplevel;
  root = pkgs.callPackage "${nixpkgs}/nixos/lib/make-ext4-fs.nix" {
    storePaths = [ top ];
    volumeLabel = "bulkhead-root";
    # NixOS stage 1 runs /init of the root when the kernel command line has no init=.
    populateImageCommands = ''
      mkdir -p ./files/etc ./files/home/user
      ln -s ${top}/init ./files/init
    '';
  };
in
pkgs.runCommand "bulkhead-guest-${name}" { passthru = { inherit guest; system = top; }; } ''
  mkdir -p $out
  ln -s ${guest.config.system.build.kernel}/${guest.config.system.boot.loader.kernelFile} $out/kernel
  ln -s ${guest.config.system.build.initialRamdisk}/${guest.config.system.boot.loader.initrdFile} $out/initrd
  ln -s ${root} $out/root.img
''
