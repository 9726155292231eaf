# Bash completion for `bulkhead` (static: its CLI has no completion generator). The vm-*
# commands have their own: vmm-glue/completions/vm.bash.
_bulkhead() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} sub="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      validate|msg|help) sub=${COMP_WORDS[i]}; break ;;
    esac
  done
  case $prev in
    --config|--startup) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --backend) COMPREPLY=($(compgen -W "auto headless winit drm" -- "$cur")); return ;;
  esac
  case $sub in
    "") COMPREPLY=($(compgen -W "validate msg help --backend --config --startup --help" -- "$cur")) ;;
    validate) COMPREPLY=($(compgen -f -W "--config --help" -- "$cur")) ;;
    msg)
      if [[ ${COMP_WORDS[COMP_CWORD-1]} == screenshot ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
      else
        COMPREPLY=($(compgen -W "version windows domains outputs stats clipboard screenshot action --help" -- "$cur"))
      fi
      ;;
    help) COMPREPLY=($(compgen -W "validate msg" -- "$cur")) ;;
  esac
}
complete -F _bulkhead bulkhead
