# Reads the written TOML back with Nix's own TOML parser and compares the strings that need
# escaping with what went in. Returns the list of mismatches; [] when all is well.
let
  cfg = import ../escaping.nix;
  back = builtins.fromTOML (import ../../lib/config.nix cfg);
  vm = builtins.head back.vm;
  cvm = builtins.head cfg.vms;
  pairs = [
    { what = "vm.app names"; a = map (a: a.name) vm.app; b = map (a: a.name) cvm.apps; }
    { what = "vm.app commands"; a = map (a: a.command) vm.app; b = map (a: a.command) cvm.apps; }
    { what = "vm.app icon"; a = (builtins.elemAt vm.app 1).icon; b = (builtins.elemAt cvm.apps 1).icon; }
    { what = "kernel-params"; a = vm.kernel-params; b = cvm.kernelParams; }
    { what = "session"; a = back.session; b = cfg.session; }
    { what = "binds"; a = back.binds; b = cfg.binds; }
  ];
in
map (p: "${p.what}: wrote ${builtins.toJSON p.b}, read back ${builtins.toJSON p.a}")
  (builtins.filter (p: p.a != p.b) pairs)
