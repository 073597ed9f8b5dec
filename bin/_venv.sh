# Sourced by bin/test and bin/rmb-judge: create or update .venv from pyproject.toml.
#
#   rmb_venv PROFILE    PROFILE: core (API and mock judges), local (+ the `local` extra for
#                       hf: judges: torch, transformers), google (+ the `google` extra for
#                       google: judges: google-genai), test (+ every extra and test tools)
#
# Each profile has its own stamp, .venv/.rmb-judge-PROFILE; a profile is installed when its
# stamp is missing or older than pyproject.toml, and installing one stamps the profiles it
# contains (test > local > core, test > google > core). So bin/test after bin/rmb-judge
# installs the extras, and bin/rmb-judge after an edit of pyproject.toml upgrades the core
# without touching torch.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
# torch first, pinned: on these machines 2.13.0 is a CPU build pip takes from local disk;
# an unpinned torch (asked for directly or by transformers) is a multi-GB CUDA download.
TORCH_PIN="torch==2.13.0"

rmb_venv_fresh() {  # PROFILE: installed since pyproject.toml last changed?
  local stamp="$VENV/.rmb-judge-$1"
  [ -f "$stamp" ] && ! [ "$ROOT/pyproject.toml" -nt "$stamp" ]
}

rmb_venv_target() {  # PROFILE: what `pip install -e` gets (tests/test_install.py resolves it)
  case "$1" in
    core) echo "$ROOT" ;;
    local) echo "$ROOT[local]" ;;
    google) echo "$ROOT[google]" ;;
    test) echo "$ROOT[local,google,test]" ;;
    *) echo "rmb-judge: unknown install profile '$1' (core, local, google or test)" >&2; return 2 ;;
  esac
}

rmb_venv() {
  local profile="$1" target contained
  target="$(rmb_venv_target "$profile")" || return 2
  case "$profile" in
    core) contained="core" ;;
    local) contained="core local" ;;
    google) contained="core google" ;;
    test) contained="core local google test" ;;
  esac
  rmb_venv_fresh "$profile" && return 0
  mkdir -p "$VENV"
  local status=0
  if command -v flock >/dev/null; then
    # one install at a time (two first runs at once); the lock is released when this ends
    { flock 9 && rmb_venv_install; } 9>"$VENV/.rmb-judge-lock" || status=$?
  else
    rmb_venv_install || status=$?
  fi
  if [ "$status" != 0 ]; then
    echo "rmb-judge: installing the $profile profile into $VENV failed (pip's message is above); rerun once that is fixed" >&2
  fi
  return "$status"
}

rmb_venv_install() {  # uses $profile, $target, $contained of rmb_venv
  rmb_venv_fresh "$profile" && return 0  # installed by another process while this one waited
  if [ ! -x "$VENV/bin/python" ]; then
    echo "rmb-judge: creating $VENV" >&2
    "$PY" -m venv "$VENV" >&2 || return 1
    "$VENV/bin/python" -m pip install -qq --upgrade pip >&2 || return 1
  fi
  # -qq: pip's errors only (this machine's pip configuration warns about a missing index
  # folder once per package); what is installed is said in one line here
  local pip=("$VENV/bin/python" -m pip install -qq)
  if [ -f "$VENV/.rmb-judge-$profile" ]; then
    echo "rmb-judge: pyproject.toml changed: updating the $profile install in $VENV" >&2
  else
    case "$profile" in
      core) echo "rmb-judge: installing rmb-judge into $VENV (API and mock judges; no torch)" >&2 ;;
      local) echo "rmb-judge: hf: judges need torch and transformers: installing the local extra into $VENV ($TORCH_PIN and transformers, about 1.1 GB; a minute or more)" >&2 ;;
      google) echo "rmb-judge: google: judges need Google's SDK: installing the google extra (google-genai) into $VENV" >&2 ;;
      test) echo "rmb-judge: installing rmb-judge with every extra and the test tools into $VENV (about 1.1 GB; a minute or more)" >&2 ;;
    esac
  fi
  # the stamps get the time the install started: an edit of pyproject.toml during it still counts
  local started="$VENV/.rmb-judge-installing.$$"
  touch "$started" || return 1
  if [ "$profile" = local ] || [ "$profile" = test ]; then
    "${pip[@]}" "$TORCH_PIN" >&2 || { rm -f "$started"; return 1; }
  fi
  "${pip[@]}" -e "$target" >&2 || { rm -f "$started"; return 1; }
  rm -f "$VENV/.rmb-judge-installed"  # the single stamp of earlier versions
  local p
  for p in $contained; do
    touch -r "$started" "$VENV/.rmb-judge-$p"
  done
  rm -f "$started"
}
