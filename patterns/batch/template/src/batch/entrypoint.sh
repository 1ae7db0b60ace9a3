#!/bin/sh
# Entrypoint of the batch job's image. Spark's Kubernetes scheduler starts executor pods from this
# image with the argument "executor" and their settings in SPARK_* variables (driver URL, executor
# ID, cores, memory, application ID, pod IP and name, resource profile, and the JVM options as
# SPARK_JAVA_OPT_0, _1, ...); this starts Spark's executor backend with them, from the jars PySpark
# ships. Anything else runs as given: python -m src.batch by default.
set -eu
if [ "${1:-}" != "executor" ]; then
    exec "$@"
fi
spark_home="$(python -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
set --
for index in $(env | sed -n 's/^SPARK_JAVA_OPT_\([0-9][0-9]*\)=.*/\1/p' | sort -n); do
    eval "set -- \"\$@\" \"\${SPARK_JAVA_OPT_$index}\""
done
exec java "$@" -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
    -cp "$spark_home/jars/*" org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "$SPARK_DRIVER_URL" --executor-id "$SPARK_EXECUTOR_ID" \
    --cores "$SPARK_EXECUTOR_CORES" --app-id "$SPARK_APPLICATION_ID" \
    --hostname "$SPARK_EXECUTOR_POD_IP" --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
    --podName "$SPARK_EXECUTOR_POD_NAME"
