# Shared by the packaging checks (tools/check-*): count checks, report each
# failure, close with one "homes: NAME: N checks, M failed" line (.ci/run
# adds those up).  Source it after setting NAME.
checks=0
failed=0

# check WHAT COMMAND...: one check, passed when COMMAND succeeds.
check() {
	what=$1
	shift
	checks=$((checks + 1))
	if "$@"; then
		echo "ok: $what"
	else
		failed=$((failed + 1))
		echo "FAIL: $what" >&2
	fi
}

# has FILE TEXT: FILE holds TEXT (a fixed string).
has() { grep -qF -- "$2" "$1"; }

# empty FILE: FILE exists and is empty; shows what it holds otherwise.
empty() {
	[ -e "$1" ] && [ ! -s "$1" ] && return 0
	sed 's/^/  | /' "$1" >&2
	return 1
}

# scratch: T, a temporary directory removed at exit (kept when KEEP is set,
# to look into after a failure).
scratch() {
	T=$(mktemp -d "/tmp/lct-$NAME.XXXXXX")
	trap '[ -n "${KEEP-}" ] && echo "kept $T" >&2 || rm -rf "$T"' EXIT
}

finish() {
	echo "homes: $NAME: $checks checks, $failed failed"
	[ "$failed" = 0 ]
}

[ "$(id -u)" = 0 ] || { echo "$NAME: needs root (namespaces, packages)" >&2; exit 1; }
