#!/usr/bin/env bash
# The main job: build the default zoo (preset digits-mlp), describe it, query it, and train a
# metanetwork on it that predicts a network's test accuracy from its weights.
# Sets up .venv first when needed (see scripts/setup_env.sh). Re-running resumes/reuses.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
ZOO="${1:-zoos/digits-mlp}"

echo "== zoo build digits-mlp --out $ZOO"
zoo build digits-mlp --out "$ZOO"

echo; echo "== zoo info $ZOO"
zoo info "$ZOO"

echo; echo "== zoo query: mean final test accuracy by activation and init"
zoo query "$ZOO" --format table "SELECT activation, init, count(*) AS runs, round(avg(test_acc), 4) AS mean_test_acc, round(max(test_acc), 4) AS best FROM models WHERE checkpoint = 20 AND status = 'ok' GROUP BY activation, init ORDER BY mean_test_acc DESC"

echo; echo "== zoo query: the 5 best networks"
zoo query "$ZOO" --format table --where "checkpoint = 20" --order-by "test_acc DESC" --limit 5 --columns model_id,activation,init,lr,weight_decay,test_acc

echo; echo "== zoo train: predict test_acc from the weights (StatNN on the ReLU and tanh MLPs, split by run, checkpoint 0 left out)"
zoo train "$ZOO" --target test_acc --model statnn --epochs 60 --out runs/digits-mlp-statnn --json
