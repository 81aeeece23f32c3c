#!/bin/sh
# Runs one kumo program under its own narrow Deno permission set (deno.json "permissions"):
#
#   sh tools/launch.sh <program> [its arguments…]
#
# The commands `deno task install` puts on the PATH (kumo-server, kumoctl, …) are two-line shims
# that exec this script; the tasks and the tests use it too, so every route applies the same sets.
#
# Why a shell script: a permission set in deno.json is static, but a server may only touch its
# own files, whose paths come from its command line. This script reads them (`-s store`, `-o log`,
# `-g binary log`, `-d pid file`; `--cluster-key file` of every program) and grants exactly those:
# read of the key file, read/write of the store's directory
# (SQLite adds -wal/-shm files and backups `<store>-<suffix>` beside the store) and write of each
# named file. Doing it here keeps `run` out of every program's set.
#
# Operators widen a set without editing code: KUMO_DENO_FLAGS is added to `deno run`, e.g.
#   KUMO_DENO_FLAGS="--allow-read=/srv/backups" kumo-server …
# KUMO_DENO names the deno binary (the installed shims set it; default: `deno` on the PATH).
# KUMO_PRINT_COMMAND=1 prints the `deno run` command, one argument per line, instead of running it.
set -eu

root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
deno=${KUMO_DENO:-deno}
if ! command -v "$deno" >/dev/null 2>&1; then
  echo "launch.sh: cannot find deno ('$deno'): put it on the PATH or set KUMO_DENO" >&2
  exit 1
fi

if [ $# -eq 0 ]; then
  echo "usage: launch.sh <program> [arguments]" >&2
  exit 1
fi
program=$1
shift

case $program in
  kumo-manager) set_name=manager file=roles/manager/main.ts ;;
  kumo-server) set_name=server file=roles/server/main.ts ;;
  kumo-gateway) set_name=gateway file=roles/gateway/main.ts ;;
  kumoctl | kumostat | kumohash | kumotop) set_name=tools file=tools/$program.ts ;;
  kumolog) set_name=kumolog file=tools/kumolog.ts ;;
  kumomergedb) set_name=kumomergedb file=tools/kumomergedb.ts ;;
  *)
    echo "launch.sh: unknown program '$program'" >&2
    exit 1
    ;;
esac

# The absolute form of a path that may not exist yet (its directory must).
absolute() {
  case $1 in
    /*) printf '%s' "$1" ;;
    *) printf '%s/%s' "$(pwd)" "$1" ;;
  esac
}

reads=""
writes=""
daemon=""
# Deno separates the paths of one --allow-* flag by commas: a path with a comma cannot be granted.
check_path() {
  case $1 in
    *,*)
      echo "$program: cannot grant access to '$1': Deno permission lists cannot hold a comma" >&2
      exit 1
      ;;
  esac
}
add_write() {
  check_path "$1"
  writes="${writes:+$writes,}$1"
}
add_read() {
  check_path "$1"
  reads="${reads:+$reads,}$1"
}

# Every RPC program (daemons and tools) may read its cluster key file, and only that file.
previous=""
for arg in "$@"; do
  case $previous in
    --cluster-key) add_read "$(absolute "$arg")" ;;
  esac
  case $arg in
    --cluster-key=*) add_read "$(absolute "${arg#--cluster-key=}")" ;;
    --) break ;;
  esac
  previous=$arg
done

# Only the daemons take other file paths; the tools' arguments are left alone.
case $set_name in
  manager | server | gateway)
    previous=""
    for arg in "$@"; do
      value=""
      case $previous in
        -s | --store) value=store ;;
        -o | --log | -g | --binary-log) value=file ;;
        -d | --daemon) value=file daemon=yes ;;
        --auth-file | --tls-cert | --tls-key) value=readable ;;
      esac
      case $arg in
        --store=*) value=store arg=${arg#--store=} ;;
        --log=* | --binary-log=*) value=file arg=${arg#*=} ;;
        --daemon=*) value=file daemon=yes arg=${arg#*=} ;;
        --auth-file=* | --tls-cert=* | --tls-key=*) value=readable arg=${arg#*=} ;;
      esac
      if [ "$value" = store ] && [ "$set_name" = server ]; then
        directory=$(dirname -- "$(absolute "$arg")")
        add_read "$directory"
        add_write "$directory"
      elif [ "$value" = file ] && [ "$arg" != "-" ]; then
        add_write "$(absolute "$arg")"
      elif [ "$value" = readable ] && [ "$set_name" = gateway ]; then
        # The gateway's credentials and TLS files: read once at start.
        add_read "$(absolute "$arg")"
      fi
      previous=$arg
    done
    ;;
esac

# The server's V8 old space may grow at most 50% past what the last full collection left live
# (V8 otherwise lets it grow up to 4x under a high allocation rate). Right after a pipelined bulk
# load of 1M keys of 100 B, servers peaked at 362-370 MiB RSS without it and 287-294 with it (28
# MiB live); an A/B measured no CPU difference (README, Performance). tools/compile.ts bakes the
# same flag into the compiled kumo-server.
v8_flags=""
if [ "$set_name" = server ]; then v8_flags="--v8-flags=--heap-growing-percent=50"; fi

set -- --quiet --no-prompt --config "$root/deno.json" "-P=$set_name" \
  ${reads:+"--allow-read=$reads"} ${writes:+"--allow-write=$writes"} \
  ${v8_flags:+"$v8_flags"} ${KUMO_DENO_FLAGS:-} "$root/$file" ${daemon:+--kumo-daemon-child} "$@"
if [ -n "${KUMO_PRINT_COMMAND:-}" ]; then
  # What would run, one argument per line (to check a set without starting the program).
  printf '%s\n' "$deno" run "$@"
  exit 0
fi
if [ -z "$daemon" ]; then
  exec "$deno" run "$@"
fi

# -d pidfile: Deno cannot fork and no set holds `run`, so the detaching happens here. The program
# starts in a session of its own (setsid -f), told by --kumo-daemon-child (roles/runtime/daemonize.ts)
# that it is the background process: it writes the pid file, then its first stdout line is
# "kumo-daemon-ready <pid>" — or its one-line error if it cannot start. Bounded wait.
start_timeout_seconds=120
line=$(setsid -f "$deno" run "$@" </dev/null 2>/dev/null | timeout "$start_timeout_seconds" head -n 1)
status=$?
case $line in
  kumo-daemon-ready*) exit 0 ;;
esac
if [ -n "$line" ]; then
  printf '%s\n' "$line" >&2
elif [ "$status" -eq 124 ]; then
  echo "$program: the background process did not start within $start_timeout_seconds s" >&2
else
  echo "$program: the background process exited before it was ready (run without -d to see why)" >&2
fi
exit 1
