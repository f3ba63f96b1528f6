#!/usr/bin/env bash
# Create Guanjia's Kafka topics with partition counts from the capacity planner.
#
#   CAMERAS=450000 BOOTSTRAP=kafka-0:9092 REPLICATION=3 bash deploy/kafka/create-topics.sh
#   DRY_RUN=1 bash deploy/kafka/create-topics.sh     # print the kafka-topics.sh commands only
#
# Needs `guanjia` (for `guanjia plan`) and Kafka's `kafka-topics.sh` on PATH (or KAFKA_TOPICS=/path).
# Existing topics are left as they are (--if-not-exists); to grow one, use kafka-topics.sh --alter.
set -euo pipefail

CAMERAS="${CAMERAS:-450000}"
INTERVAL="${INTERVAL:-2}"
RESOLUTION="${RESOLUTION:-1080p}"
GOP="${GOP:-50}"
BOOTSTRAP="${BOOTSTRAP:-${GUANJIA_KAFKA_BOOTSTRAP:-127.0.0.1:9092}}"
REPLICATION="${REPLICATION:-3}"
PREFIX="${GUANJIA_TOPIC_PREFIX:-guanjia}"
KAFKA_TOPICS="${KAFKA_TOPICS:-kafka-topics.sh}"
GUANJIA="${GUANJIA:-guanjia}"

plan_json="$("$GUANJIA" plan --cameras "$CAMERAS" --interval "$INTERVAL" --resolution "$RESOLUTION" --gop "$GOP" \
             --replication "$REPLICATION" --json)"
read -r CAMERA_PARTS DETECTION_PARTS < <(python3 -c '
import json, sys
p = json.load(sys.stdin)["plan"]
missing = [k for k in ("kafka_partitions_cameras", "kafka_partitions_detections") if k not in p]
if missing:
    sys.exit("guanjia plan has no " + ", ".join(missing) + ": record the figures first (see docs/capacity.md)")
print(p["kafka_partitions_cameras"], p["kafka_partitions_detections"])' <<<"$plan_json")

# topic  partitions  extra configs
TOPICS=(
  "$PREFIX.cameras.v1            $CAMERA_PARTS     cleanup.policy=compact,min.cleanable.dirty.ratio=0.1,segment.ms=3600000"
  "$PREFIX.detections.v1         $DETECTION_PARTS  retention.ms=86400000"
  "$PREFIX.camera-health.v1      $DETECTION_PARTS  retention.ms=86400000"
  "$PREFIX.sensor-readings.v1    $DETECTION_PARTS  retention.ms=604800000"
  "$PREFIX.grid-signals.v1       $DETECTION_PARTS  retention.ms=86400000"
  "$PREFIX.event-changes.v1      $DETECTION_PARTS  retention.ms=604800000"
  "$PREFIX.governance-events.v1  $DETECTION_PARTS  retention.ms=2592000000"
  "$PREFIX.event-acks.v1         $DETECTION_PARTS  retention.ms=2592000000"
  "$PREFIX.dead-letter.v1        $DETECTION_PARTS  retention.ms=2592000000"
  # the events worker's table changelogs (app id <prefix>-events; partitions = their source topic's)
  "$PREFIX-events-cameras-changelog  $DETECTION_PARTS  cleanup.policy=compact"
  "$PREFIX-events-grids-changelog    $DETECTION_PARTS  cleanup.policy=compact"
  "$PREFIX-events-health-changelog   $DETECTION_PARTS  cleanup.policy=compact"
  "$PREFIX-events-desk-changelog     $DETECTION_PARTS  cleanup.policy=compact"
)

echo "plan: $CAMERAS cameras → $CAMERA_PARTS camera partitions, $DETECTION_PARTS detection partitions, replication $REPLICATION" >&2
for line in "${TOPICS[@]}"; do
  read -r topic parts configs <<<"$line"
  cmd=("$KAFKA_TOPICS" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists --topic "$topic"
       --partitions "$parts" --replication-factor "$REPLICATION")
  IFS=',' read -ra kv <<<"$configs"
  for c in "${kv[@]}"; do cmd+=(--config "$c"); done
  if [[ -n "${DRY_RUN:-}" ]]; then
    printf '%q ' "${cmd[@]}"; echo
  else
    "${cmd[@]}"
  fi
done
