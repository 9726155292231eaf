# `programs.bulkhead` option values -> the text of Bulkhead's config.toml.
# Pure: builtins only (no nixpkgs lib), so `nix-instantiate --eval` tests it anywhere (nix/check).
#
#   import ./config.nix { vms = [ { name = "work"; color = "#3060ff"; } ]; }
#
# Nix names are camelCase (rootDisk), TOML keys kebab-case (root-disk); nix/lib/schema.nix
# lists them in the order they are written. null, empty lists and empty attrsets are left out,
# so Bulkhead's own defaults apply. Module-only options (enable, user, guestPrograms, ...) and the
# module system's `_module` are skipped; any other unknown name is an error, so a typo fails the
# build instead of being dropped silently.
cfg:
let
  schema = import ./schema.nix;
  inherit (builtins)
    attrNames concatStringsSep concatLists elem filter genList isAttrs isBool isFloat isInt
    isList isString isPath length map match replaceStrings toJSON typeOf;

  # ---- names ----
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  kebab = s: replaceStrings upper (map (c: "-" + c) lower) s;
  tomlName = field: field.toml or (kebab field.n);

  # ---- values ----
  del = builtins.fromJSON "\"\\u007f\"";
  # JSON's escaping is valid TOML escaping (\" \\ \n \t \uXXXX ...); TOML also wants DEL escaped.
  str = s: replaceStrings [ del ] [ "\\u007f" ] (toJSON s);
  bareKey = k: match "[A-Za-z0-9_-]+" k != null;
  key = k: if bareKey k then k else str k;
  float = x:
    let s = toJSON x; in
    # toJSON prints 2.0 as "2": keep it a TOML float.
    if match "-?[0-9]+" s != null then s + ".0" else s;
  scalar = where: v:
    if isString v then str v
    else if isPath v then str (toString v)
    else if isBool v then (if v then "true" else "false")
    else if isInt v then toString v
    else if isFloat v then float v
    else if isList v then "[" + concatStringsSep ", " (map (scalar where) v) + "]"
    else throw "programs.bulkhead: ${where} is a ${typeOf v}, which cannot be written to TOML here";

  # Whether a value is written at all.
  present = v: v != null && v != [ ] && v != { };

  # A value of a field, checked against its type where the type decides the TOML form.
  value = where: t: v:
    if isAttrs t && t ? or then
      (if isAttrs v then inlineTable where t.table v else value where t.or v)
    else if isAttrs t && t ? inline then
      (if isList v then "[" + concatStringsSep ", " (map (inlineTable where t.inline) v) + "]"
       else throw "programs.bulkhead: ${where} must be a list of attribute sets")
    else if isAttrs t && t ? enum then
      (if isString v && elem v t.enum then str v
       else throw "programs.bulkhead: ${where} = ${toJSON v} is not one of ${concatStringsSep ", " t.enum}")
    else if t == "bool" && !isBool v then throw "programs.bulkhead: ${where} must be true or false"
    else if t == "int" && !isInt v then throw "programs.bulkhead: ${where} must be an integer"
    else if t == "float" && !(isFloat v || isInt v) then throw "programs.bulkhead: ${where} must be a number"
    else if t == "float" then float v
    else if (t == "size" || t == "duration") && !(isString v || isInt v) then
      throw "programs.bulkhead: ${where} must be a string like \"2G\"/\"15m\" or an integer"
    else if (t == "str" || t == "path") && !(isString v || isPath v) then
      throw "programs.bulkhead: ${where} must be a string"
    else if t == "strs" && !(isList v && filter (x: !(isString x || isPath x)) v == [ ]) then
      throw "programs.bulkhead: ${where} must be a list of strings"
    else scalar where v;

  # Checks that `attrs` names only fields of `fields` (or module-only ones).
  known = where: fields: extra: attrs:
    let
      names = map (f: f.n) fields;
      unknown = filter (n: !(elem n names) && !(elem n extra) && n != "_module") (attrNames attrs);
    in
    if unknown == [ ] then attrs
    else throw "programs.bulkhead: unknown option ${where}${if where == "" then "" else "."}${concatStringsSep ", " unknown} (known: ${concatStringsSep ", " names})";

  isTableList = f: isAttrs f.t && f.t ? tables;
  isSection = f: isAttrs f.t && f.t ? section;
  sub = where: n: if where == "" then n else "${where}.${n}";

  # `k = v` lines of the plain fields of a table.
  keyLines = where: fields: attrs:
    concatLists (map
      (f:
        if isTableList f || isSection f || f.t == "binds" || !(attrs ? ${f.n}) || !(present attrs.${f.n}) then [ ]
        else [ "${key (tomlName f)} = ${value (sub where f.n) f.t attrs.${f.n}}" ])
      fields);

  inlineTable = where: fields: attrs:
    let lines = keyLines where fields (known where fields [ ] attrs); in
    if lines == [ ] then "{}" else "{ " + concatStringsSep ", " lines + " }";

  # A table's body, then its `[[path.sub]]` arrays of tables (and `[path.sub]` sections).
  tableBody = where: path: fields: extra: attrs:
    let a = known where fields extra attrs; in
    keyLines where fields a
    ++ concatLists (map
      (f:
        if !(a ? ${f.n}) || !(present a.${f.n}) then [ ]
        else if isTableList f then
          (if !isList a.${f.n} then throw "programs.bulkhead: ${sub where f.n} must be a list of attribute sets"
           else concatLists (genList
            (i:
              let
                elemWhere = "${sub where f.n}[${toString i}]";
                el = builtins.elemAt a.${f.n} i;
              in
              if !isAttrs el then throw "programs.bulkhead: ${elemWhere} must be an attribute set"
              else [ "" "[[${path (tomlName f)}]]" ]
                ++ tableBody elemWhere (k: "${path (tomlName f)}.${k}") f.t.tables
                  (if f.n == "vms" then schema.moduleOnly.vm else [ ]) el)
            (length a.${f.n})))
        else if isSection f then
          let body = tableBody (sub where f.n) (k: "${path (tomlName f)}.${k}") f.t.section [ ] a.${f.n}; in
          if body == [ ] then [ ] else [ "" "[${path (tomlName f)}]" ] ++ body
        else if f.t == "binds" then
          (if !isAttrs a.${f.n} then throw "programs.bulkhead: ${sub where f.n} must be an attribute set of strings"
           else [ "" "[${path (tomlName f)}]" ]
            ++ map (k: "${key k} = ${value "${sub where f.n}.${key k}" "str" a.${f.n}.${k}}") (attrNames a.${f.n}))
        else [ ])
      fields);

  lines = tableBody "" (k: k) schema.top schema.moduleOnly.top cfg;
  # Drop the blank line before the first header.
  body = if lines != [ ] && builtins.head lines == "" then builtins.tail lines else lines;
in
"# Written by the Bulkhead NixOS module (programs.bulkhead); edit the Nix options, not this file.\n\n"
+ concatStringsSep "\n" body + "\n"
