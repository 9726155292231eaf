# Strings that need TOML escaping or quoted keys: quotes, backslashes, newlines, tabs, control
# characters, DEL, non-ASCII text, and key bindings whose names are not bare TOML keys.
let
  ctrl = builtins.fromJSON "\"\\u0001\\u001f\\u007f\"";
in
{
  vms = [
    {
      name = "notes";
      color = "#AbCdEf";
      kernelParams = [ "console=ttyS0,115200" "opt=\"quoted\"" ];
      apps = [
        { name = "Café ☕ \"quoted\""; command = [ "sh" "-c" "printf '%s\\n' \"$HOME\" # not a comment" ]; }
        { name = "Tabs\\and\\backslashes"; command = [ "C:\\path\\app.exe" "a\tb" "line1\nline2\r" ctrl ]; icon = "/usr/share/icons/ünï.png"; }
      ];
    }
  ];
  session = {
    autostart = [ "waybar -c \"$HOME/.config/waybar/config\"" "sh -c 'sleep 1; echo done'" ];
    lock = "swaylock -f -c 000000 --text \"[locked]\"";
  };
  binds = {
    "Super+Return" = "spawn foot -e sh -c \"echo hi\"";
    "Ctrl+Shift+C" = "none";
    "Super+1" = "spawn \\\\server\\share";
  };
}
