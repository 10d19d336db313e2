# Stand-in for nixpkgs' installShellFiles hook: the two functions rcc's package uses, with the same destinations
# (and the man page gzipped, as nixpkgs' fixup phase leaves it).
installShellCompletion() {
    cmd=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --cmd) cmd="$2"; shift 2 ;;
            --bash) mkdir -p "$out/share/bash-completion/completions"
                    cp "$2" "$out/share/bash-completion/completions/$cmd.bash"; shift 2 ;;
            --zsh) mkdir -p "$out/share/zsh/site-functions"
                   cp "$2" "$out/share/zsh/site-functions/_$cmd"; shift 2 ;;
            --fish) mkdir -p "$out/share/fish/vendor_completions.d"
                    cp "$2" "$out/share/fish/vendor_completions.d/$cmd.fish"; shift 2 ;;
            *) echo "installShellCompletion: unsupported argument $1" >&2; return 1 ;;
        esac
    done
}
installManPage() {
    for page in "$@"; do
        section="${page##*.}"
        mkdir -p "$out/share/man/man$section"
        gzip -n -c "$page" > "$out/share/man/man$section/$(basename "$page").gz"
    done
}
