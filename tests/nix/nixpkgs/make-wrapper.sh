# Stand-in for nixpkgs' makeWrapper: makeWrapper EXECUTABLE WRAPPER [--suffix|--prefix VAR SEP VALUE]
# [--set VAR VALUE] [--add-flags FLAG]... Any other flag is an error (a stand-in that silently ignored
# one would hide a broken wrapper).
q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
makeWrapper() {
    exe=$1 wrapper=$2
    shift 2
    flags=
    {
        echo '#!/bin/sh'
        while [ $# -gt 0 ]; do
            case $1 in
            --suffix) echo "$2=\${$2:+\$$2$(q "$3")}$(q "$4"); export $2"; shift 4 ;;
            --prefix) echo "$2=$(q "$4")\${$2:+$(q "$3")\$$2}; export $2"; shift 4 ;;
            --set) echo "$2=$(q "$3"); export $2"; shift 3 ;;
            --add-flags) flags="$flags $(q "$2")"; shift 2 ;;
            *) echo "makeWrapper (stand-in): unsupported argument $1" >&2; exit 1 ;;
            esac
        done
        echo "exec $(q "$exe")$flags \"\$@\""
    } > "$wrapper"
    chmod +x "$wrapper"
}
