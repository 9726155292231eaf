# Bulkhead's Rust workspace as Nix packages. UNBUILT: parse-checked by nix/check only; the
# first build on a Nix host will also tell whether the native inputs below are complete.
# `crate` picks the Cargo package (-p), `bins` documents what it installs.
{ lib, rustPlatform, pkg-config, libxkbcommon, pixman, wayland, udev, libinput, seatd
, mesa, libglvnd, libgbm ? mesa, src, pname, crate, bins, description, extraPostInstall ? "" }:
rustPlatform.buildRustPackage {
  inherit pname src;
  version = (builtins.fromTOML (builtins.readFile "${src}/Cargo.toml")).workspace.package.version;
  cargoLock.lockFile = "${src}/Cargo.lock";
  cargoBuildFlags = [ "-p" crate ];
  # The workspace's tests boot QEMU guests and run Wayland clients: CI runs them (.ci/test).
  doCheck = false;
  nativeBuildInputs = [ pkg-config ];
  buildInputs = lib.optionals (crate == "bulkhead") [ libxkbcommon pixman wayland udev libinput seatd libgbm libglvnd ];
  postInstall = extraPostInstall;
  # providedSessions: services.displayManager.sessionPackages needs it.
  passthru = { inherit bins; } // lib.optionalAttrs (crate == "bulkhead") { providedSessions = [ "bulkhead" ]; };
  meta = {
    inherit description;
    license = lib.licenses.gpl3Plus;
    platforms = lib.platforms.linux;
    mainProgram = builtins.head bins;
  };
}
