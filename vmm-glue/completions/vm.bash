# Bash completion for Bulkhead's vm-* commands: VM names from the running compositor.
# Install: source this file, or copy it to /usr/share/bash-completion/completions/ as
# vm-run, vm-start, vm-stop, vm-shell and vm-list (symlinks).
_bulkhead_vm() {
  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[0]##*/} i arg=0
  if [[ $cur == -* ]]; then
    case $cmd in
      vm-run) COMPREPLY=($(compgen -W "--wait --raw --help --version" -- "$cur")) ;;
      vm-shell) COMPREPLY=($(compgen -W "--raw --help --version" -- "$cur")) ;;
      vm-list) COMPREPLY=($(compgen -W "--json --names --help --version" -- "$cur")) ;;
      *) COMPREPLY=($(compgen -W "--help --version" -- "$cur")) ;;
    esac
    return
  fi
  # Count positional arguments before the cursor.
  for ((i = 1; i < COMP_CWORD; i++)); do
    [[ ${COMP_WORDS[i]} != -* ]] && ((arg++))
  done
  case $cmd in
    vm-list) return ;;
    vm-run)
      if ((arg == 0)); then
        COMPREPLY=($(compgen -W "$(vm-list --names 2>/dev/null)" -- "$cur"))
      else
        COMPREPLY=($(compgen -c -- "$cur"))
      fi
      ;;
    vm-shell) ((arg == 0)) && COMPREPLY=($(compgen -W "$(vm-list --names 2>/dev/null)" -- "$cur")) ;;
    *) COMPREPLY=($(compgen -W "$(vm-list --names 2>/dev/null)" -- "$cur")) ;;
  esac
}
complete -F _bulkhead_vm vm-run vm-start vm-stop vm-shell vm-list
