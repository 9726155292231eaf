# Schema checks for nix/check (builtins only): every field has a description, and the sample
# `cfg` sets every field somewhere (in any list element; both forms of a bool-or-table option).
# Returns the list of problems; [] when all is well.
cfg:
let
  schema = import ../../lib/schema.nix;
  inherit (builtins) all any attrNames concatLists filter isAttrs isList isString map stringLength;
  kinds = t: if isAttrs t then t else { };
  # Problems of `fields` given the values `vals` (a list of attrsets that may set them).
  check = where: fields: vals:
    concatLists (map
      (f:
        let
          here = "${where}${f.n}";
          set = filter (v: v != null) (map (v: v.${f.n} or null) vals);
          t = kinds f.t;
          nested =
            if t ? tables then check "${here}[]." t.tables (concatLists (filter isList set))
            else if t ? inline then check "${here}[]." t.inline (concatLists (filter isList set))
            else if t ? section then check "${here}." t.section (filter isAttrs set)
            else if t ? table then
              check "${here}{}." t.table (filter isAttrs set)
              ++ (if any (v: !(isAttrs v)) set then [ ] else [ "${here}: never given in its short (non-table) form" ])
            else [ ];
        in
        (if !(isString f.d) || stringLength f.d < 10 then [ "${here}: no description" ] else [ ])
        ++ (if set == [ ] then [ "${here}: not set by the sample" ] else nested))
      fields);
in
check "" schema.top [ cfg ]
