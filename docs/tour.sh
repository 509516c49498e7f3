#!/usr/bin/env bash
# The README's five-minute tour, run end to end so it cannot rot: start `billing serve` on a
# scratch data directory, sign up with curl, see the tenant's commit with `git log`, read the
# deployment status, verify the license over HTTP and with the CLI, then rotate the signing key
# as docs/operations.md says and verify the license again. Every command of the
# README's checked tour block must appear in this file (checked first). CI runs it after
# `cargo test`: `BILLING=target/debug/billing bash docs/tour.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

fail() {
  printf 'tour: FAILED: %s\n' "$*" >&2
  exit 1
}

# The README's tour block (after the `<!-- docs/tour.sh -->` marker) is what a newcomer types:
# each of its lines must be a line (or part of one) of this script.
readme_block=$(awk '/<!-- docs\/tour.sh -->/ { armed = 1; next }
  armed && /^```/ { if (inside) exit; inside = 1; next }
  inside { print }' README.md)
[ -n "$readme_block" ] || fail "README.md has no tour block after <!-- docs/tour.sh -->"
while IFS= read -r line; do
  line="${line#"${line%%[![:space:]]*}"}"
  [ -z "$line" ] && continue
  grep -qF -- "$line" "$0" || fail "README tour line not in docs/tour.sh: $line"
done <<<"$readme_block"

BILLING=${BILLING:-target/debug/billing}
[ -x "$BILLING" ] || fail "no billing binary at $BILLING (run cargo build, or set BILLING)"
BILLING=$(cd "$(dirname "$BILLING")" && pwd)/$(basename "$BILLING")
billing() { "$BILLING" "$@"; }
for tool in curl git python3; do
  command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed"
done

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill -TERM -- "-$server" 2>/dev/null || kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# What the README's terminal 1 runs (`ADMIN_API_TOKEN=dev-admin cargo run -- serve`), on a
# scratch data directory and a free port; the log names the port.
# Settings from the caller's environment would point the tour elsewhere: only defaults here.
unset DATABASE_URL GITOPS_REPO GITOPS_REMOTE LICENSE_PRIVATE_KEY_PATH LICENSE_PUBLIC_KEY_PATH
export DATA_DIR="$work/data" ADMIN_API_TOKEN=dev-admin LISTEN_ADDR=127.0.0.1:0 WATCHER_KUBE_POLL=off
setsid "$BILLING" serve >"$work/server.log" 2>&1 &
server=$!
BASE=
for _ in $(seq 1 300); do
  BASE=$(grep -o 'listening on http://[0-9.:]*' "$work/server.log" | sed 's/^listening on //' || true)
  [ -n "$BASE" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; fail "billing serve exited"; }
  sleep 0.1
done
[ -n "$BASE" ] || { cat "$work/server.log" >&2; fail "billing serve did not say where it listens"; }
for _ in $(seq 1 50); do
  curl -sSf "$BASE/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sSf "$BASE/health" >/dev/null || fail "$BASE/health does not answer"
echo "tour: billing serve is up at $BASE"

# 1. Sign up: a customer, a 14-day trial, a license, and a render job for the tenant's stack.
curl -sS -H 'content-type: application/json' \
  -d '{"email":"ada@example.com","password":"correct horse battery","company_name":"Acme"}' \
  "$BASE/api/customers/signup" | tee signup.json
echo
grep -q '"message":"Signup successful"' signup.json || fail "signup did not succeed"
grep -q '"status":"trialing"' signup.json || fail "signup gave no trial"
id=$(python3 -c 'import json; print(json.load(open("signup.json"))["customer"]["customer_id"])')
jwt=$(python3 -c 'import json; print(json.load(open("signup.json"))["license"]["jwt"])')

# 2. The tenant's stack is a commit in the GitOps repository (the worker takes a moment).
for _ in $(seq 1 100); do
  git --git-dir "$DATA_DIR/gitops.git" log --oneline | grep -q "tenant $id: create" && break
  sleep 0.1
done
git --git-dir "$DATA_DIR/gitops.git" log --oneline | tee log.txt
grep -q "tenant $id: create (starter, trialing)" log.txt || fail "no commit for tenant $id"
dir=$("$BILLING" tenant path "$id")
git --git-dir "$DATA_DIR/gitops.git" ls-tree --name-only "main:$dir" | grep -qx kustomization.yaml ||
  fail "$dir/ has no kustomization.yaml"

# 3. The deployment status: `committed` with the commit's revision (`ready` once a cluster reports).
curl -sS -H "authorization: Bearer $ADMIN_API_TOKEN" "$BASE/api/customers/$id/deployment/status" | tee status.json
echo
revision=$(git --git-dir "$DATA_DIR/gitops.git" rev-parse main)
grep -q '"status":"committed"' status.json || fail "status is not committed"
grep -q "\"committed_revision\":\"$revision\"" status.json || fail "status does not name commit $revision"
billing tenant history "$id" -o table | tee history.txt
grep -q "^${revision:0:12} .*create (starter, trialing)" history.txt || fail "history does not list commit $revision"

# 3b. The operator's view: the tenant in the list, a rollout dry run (nothing is behind on the
# templates the tenant was rendered with), and the admin page's login form.
billing tenant list -o table | tee list.txt
grep -q "^$id .*ada@example.com" list.txt || fail "tenant list does not show $id"
billing rollout start --dry-run -o table | tee dry-run.txt
head -n 1 dry-run.txt | grep -q '^TENANTS' || fail "the dry run printed no table: $(cat dry-run.txt)"
sed -n 2p dry-run.txt | grep -q '^0 ' || fail "the dry run counts tenants to change on unchanged templates"
curl -sS "$BASE/admin/login" | grep -c csrf_token | tee login.txt
[ "$(cat login.txt)" -ge 1 ] || fail "the admin login form has no CSRF token"

# 4. The license verifies, over HTTP and offline with the CLI (same DATA_DIR, same keys).
curl -sS -H 'content-type: application/json' -d "{\"license\":\"$jwt\"}" "$BASE/api/licenses/verify" | tee verify.json
echo
grep -q '"valid":true' verify.json || fail "the license does not verify over HTTP"
grep -q "\"customerId\":\"$id\"" verify.json || fail "the verified license is not tenant $id's"
billing license verify "$jwt" | tee claims.json
grep -q "\"customerId\": \"$id\"" claims.json || fail "billing license verify did not print tenant $id's claims"

# 5. docs/operations.md's key rotation: a new signing key, and the old license still verifies.
billing keys rotate | tee rotate.txt
grep -q '^retired key .*; new signing key ' rotate.txt || fail "billing keys rotate said: $(cat rotate.txt)"
billing license verify "$jwt" >/dev/null || fail "the license does not verify after a key rotation"

cd "$root"
echo "tour: all steps passed"
