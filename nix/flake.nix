# Bulkhead for Nix users: `inputs.bulkhead.url = "github:OWNER/bulkhead?dir=nix";`
#
# UNBUILT: CI (nix/check) parses every file here and tests the config.toml writer
# (lib/config.nix) with its samples, but nixpkgs cannot be fetched there, so the packages, the
# module and the guest images have not been built or evaluated. Confirm on a Nix host with
# `nix flake check ./nix` and `nix build ./nix#bulkhead`, then update this comment.
{
  description = "Bulkhead: a Wayland compositor whose windows belong to VM security domains";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
      # The repository root: this flake lives in nix/.
      src = nixpkgs.lib.cleanSource ./..;
      crate = pkgs: args: pkgs.callPackage ./package.nix ({ inherit src; } // args);
    in
    {
      packages = forAll (system: pkgs: rec {
        bulkhead = crate pkgs {
          pname = "bulkhead";
          crate = "bulkhead";
          bins = [ "bulkhead" ];
          description = "The Bulkhead compositor";
          extraPostInstall = ''
            install -Dm644 ${src}/compositor/data/bulkhead.desktop $out/share/wayland-sessions/bulkhead.desktop
            substituteInPlace $out/share/wayland-sessions/bulkhead.desktop --replace-fail "Exec=bulkhead" "Exec=$out/bin/bulkhead"
            install -Dm644 ${./completions/bulkhead.bash} $out/share/bash-completion/completions/bulkhead
            install -Dm644 ${src}/compositor/config/example-config.toml $out/share/doc/bulkhead/example-config.toml
          '';
        };
        vm-tools = crate pkgs {
          pname = "bulkhead-vm-tools";
          crate = "bulkhead-vmm";
          bins = [ "vm-run" "vm-start" "vm-stop" "vm-shell" "vm-list" "bulkhead-wl-bridge" "bulkhead-term-filter" "bulkhead-vm-monitor" ];
          description = "Bulkhead's host VM tools";
          extraPostInstall = ''
            install -Dm644 ${src}/vmm-glue/completions/vm.bash $out/share/bash-completion/completions/vm-run
            for c in vm-start vm-stop vm-shell vm-list; do
              ln -s vm-run $out/share/bash-completion/completions/$c
            done
          '';
        };
        guest-tools = crate pkgs {
          pname = "bulkhead-guest-tools";
          crate = "bulkhead-guest";
          bins = [ "bulkhead-agent" "bulkhead-wl-proxy" ];
          description = "What runs inside a Bulkhead guest";
        };
        # A NixOS guest with nothing but Bulkhead's guest side (the module builds one per VM).
        guest-image = import ./guest/image.nix {
          inherit nixpkgs pkgs system;
          name = "guest";
          guestTools = guest-tools;
          modules = [ ];
        };
        default = bulkhead;
      } // nixpkgs.lib.optionalAttrs (builtins.pathExists ../net-switch/Cargo.toml) {
        # bulkhead-switch, the VM network switch (net-switch/).
        bulkhead-switch = crate pkgs {
          pname = "bulkhead-switch";
          crate = "bulkhead-switch";
          bins = [ "bulkhead-switch" ];
          description = "Bulkhead's VM network switch (vhost-user net backend)";
        };
      });

      nixosModules.default = import ./module.nix { inherit self nixpkgs; };
      nixosModules.bulkhead = self.nixosModules.default;

      # The pure option-to-TOML writer, for use outside the module.
      lib.configToml = import ./lib/config.nix;
    };
}
