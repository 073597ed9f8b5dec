# Sourced by bin/test and bin/rmb-judge: create or update .venv from pyproject.toml.
#
#   rmb_venv [EXTRA ...]   the extras of pyproject.toml a command needs, on top of the core
#                          (API and mock judges): `local` for hf: judges (torch, transformers),
#                          `google` for google: judges (google-genai), a benchmark's own (what
#                          rmb_judge/extras.py says a command line needs); `test` is every
#                          extra and the test tools (bin/test)
#
# The core and each extra have a stamp, .venv/.rmb-judge-NAME; what is asked for is installed
# when a stamp is missing or older than pyproject.toml, and installing stamps the core and the
# extras it holds (`test`: every extra). So bin/test after bin/rmb-judge installs the extras,
# and bin/rmb-judge after an edit of pyproject.toml upgrades the core without touching torch.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
# torch first, pinned: on these machines 2.13.0 is a CPU build pip takes from local disk;
# an unpinned torch (asked for directly or by transformers) is a multi-GB CUDA download.
TORCH_PIN="torch==2.13.0"

rmb_venv_fresh() {  # NAME: the core or an extra, installed since pyproject.toml last changed?
  local stamp="$VENV/.rmb-judge-$1"
  [ -f "$stamp" ] && ! [ "$ROOT/pyproject.toml" -nt "$stamp" ]
}

rmb_venv_extras() {  # every extra pyproject.toml declares
  "$PY" -c 'import sys, tomllib; print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]))' \
    "$ROOT/pyproject.toml"
}

rmb_venv_names() {  # [EXTRA ...]: the stamps an install of these extras makes (test: every extra)
  local names="core" extra
  for extra in "$@"; do
    case "$extra" in
      core) ;;
      test) names="$names $(rmb_venv_extras)" ;;
      *) names="$names $extra" ;;
    esac
  done
  echo "$names" | tr ' ' '\n' | sort -u | tr '\n' ' '
}

rmb_venv_target() {  # [EXTRA ...]: what `pip install -e` gets (tests/test_install.py resolves it)
  local known extras="" extra
  known=" $(rmb_venv_extras) "
  for extra in $(rmb_venv_names "$@"); do
    [ "$extra" = core ] && continue
    if [[ "$known" != *" $extra "* ]]; then
      echo "rmb-judge: unknown install extra '$extra' (pyproject.toml has:$known)" >&2
      return 2
    fi
    extras="${extras:+$extras,}$extra"
  done
  if [ -n "$extras" ]; then echo "$ROOT[$extras]"; else echo "$ROOT"; fi
}

rmb_venv() {
  local target names name fresh=1
  target="$(rmb_venv_target "$@")" || return 2
  names="$(rmb_venv_names "$@")"
  for name in $names; do
    rmb_venv_fresh "$name" || fresh=0
  done
  [ "$fresh" = 1 ] && return 0
  mkdir -p "$VENV"
  local status=0
  if command -v flock >/dev/null; then
    # one install at a time (two first runs at once); the lock is released when this ends
    { flock 9 && rmb_venv_install; } 9>"$VENV/.rmb-judge-lock" || status=$?
  else
    rmb_venv_install || status=$?
  fi
  if [ "$status" != 0 ]; then
    echo "rmb-judge: installing ${names% } into $VENV failed (pip's message is above); rerun once that is fixed" >&2
  fi
  return "$status"
}

rmb_venv_install() {  # uses $target and $names of rmb_venv
  local name stale=0
  for name in $names; do
    rmb_venv_fresh "$name" || stale=1
  done
  [ "$stale" = 0 ] && return 0  # installed by another process while this one waited
  if [ ! -x "$VENV/bin/python" ]; then
    echo "rmb-judge: creating $VENV" >&2
    "$PY" -m venv "$VENV" >&2 || return 1
    "$VENV/bin/python" -m pip install -qq --upgrade pip >&2 || return 1
  fi
  # -qq: pip's errors only (this machine's pip configuration warns about a missing index
  # folder once per package); what is installed is said in one line here
  local pip=("$VENV/bin/python" -m pip install -qq)
  if [ -f "$VENV/.rmb-judge-core" ]; then
    echo "rmb-judge: installing ${names% } into $VENV (pyproject.toml changed, or an extra this command needs)" >&2
  fi
  case " $names " in
    *" test "*) echo "rmb-judge: installing rmb-judge with every extra and the test tools into $VENV (about 1.1 GB; a minute or more)" >&2 ;;
    *" local "*) echo "rmb-judge: hf: judges need torch and transformers: installing the local extra into $VENV ($TORCH_PIN and transformers, about 1.1 GB; a minute or more)" >&2 ;;
    *" google "*) echo "rmb-judge: google: judges need Google's SDK: installing the google extra (google-genai) into $VENV" >&2 ;;
    *) [ -f "$VENV/.rmb-judge-core" ] || echo "rmb-judge: installing rmb-judge into $VENV (API and mock judges; no torch)" >&2 ;;
  esac
  # the stamps get the time the install started: an edit of pyproject.toml during it still counts
  local started="$VENV/.rmb-judge-installing.$$"
  touch "$started" || return 1
  case " $names " in
    *" local "*) "${pip[@]}" "$TORCH_PIN" >&2 || { rm -f "$started"; return 1; } ;;
  esac
  "${pip[@]}" -e "$target" >&2 || { rm -f "$started"; return 1; }
  rm -f "$VENV/.rmb-judge-installed"  # the single stamp of earlier versions
  for name in $names; do
    touch -r "$started" "$VENV/.rmb-judge-$name"
  done
  rm -f "$started"
}
