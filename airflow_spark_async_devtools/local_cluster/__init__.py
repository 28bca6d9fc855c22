"""Start and stop a throw-away Spark standalone cluster on 127.0.0.1 from the ``pyspark`` wheel.

This is a development helper for laptops and CI, **not** a cluster manager: one master and one worker,
both on loopback, both JVMs started from the jars that ship inside the installed ``pyspark`` package, so
the cluster always runs exactly the Spark version the tests import.  It exists so that the standalone
REST backend of this provider can be exercised end to end (submit / poll / kill a real driver) without
Docker or a Spark download.

.. warning::

   The master's REST submission server (``spark.master.rest.enabled``) accepts **unauthenticated**
   submissions: anyone who can reach its port can run arbitrary code as the user that started the
   cluster.  This helper therefore binds every daemon to ``127.0.0.1`` and offers no way to change
   that.  Never expose the REST port (or any port of this cluster) beyond loopback; a real deployment
   needs ``spark.master.rest.filters=org.apache.spark.ui.JWSFilter`` with a secret, TLS and a firewall.

Usage from the shell::

    python -m airflow_spark_async_devtools.local_cluster start  [--workdir DIR] [--master-port 7077]
        [--rest-port 6066] [--ui-port 8090] [--worker-ui-port 8081] [--worker-cores 2] [--worker-memory 2g]
    python -m airflow_spark_async_devtools.local_cluster status [--workdir DIR] [--json]
    python -m airflow_spark_async_devtools.local_cluster stop   [--workdir DIR]

and from Python::

    with LocalSparkCluster(workdir=tmp_path) as cluster:
        submit_to(cluster.rest_url, master=cluster.master_url)

How it works, and why:

* ``pyspark`` ships ``bin/spark-class`` but not ``sbin/start-master.sh``, so both daemons are started
  with ``spark-class <MainClass>`` directly, each in its own session/process group
  (``start_new_session``) so that a terminal's Ctrl-C does not take them down after ``start`` returned,
  and so that ``stop`` can signal a whole group.
* Spark options reach the daemons through ``SPARK_MASTER_OPTS`` and ``SPARK_DAEMON_JAVA_OPTS`` (read
  by ``spark-class``'s launcher; the user's own values of those and of ``SPARK_WORKER_*`` are cleared).
  ``spark.port.maxRetries=0`` makes a port taken between our free-port check and the JVM's bind a hard
  error instead of Spark silently moving the UI to the next port.
* ``SPARK_CONF_DIR`` points at an empty ``<workdir>/conf`` so a stray ``spark-env.sh`` or
  ``spark-defaults.conf`` of the machine cannot change the cluster; ``SPARK_LOCAL_DIRS`` points into the
  workdir so shuffle/scratch files do not pile up in ``/tmp``.
* ``PYSPARK_PYTHON`` is set to the interpreter running this module (by default) in the worker's
  environment, and ``PYSPARK_DRIVER_PYTHON`` is removed from it.  Drivers and executors are child
  processes of the worker and inherit that environment, so cluster-mode PySpark drivers and their
  executors run with the same virtualenv as the tests.  A submission can still choose another
  interpreter; for the driver, Spark's ``PythonRunner`` takes the first of ``spark.pyspark.driver.python``,
  ``spark.pyspark.python``, ``PYSPARK_DRIVER_PYTHON``, ``PYSPARK_PYTHON`` (the submission's
  ``environmentVariables`` override the worker's environment).  A leftover ``PYSPARK_DRIVER_PYTHON``
  (e.g. ``jupyter``) in the shell would otherwise win over all of that, hence its removal.
* Every process of the cluster carries a random cluster id, both as a ``-D`` property on the daemons'
  command lines and as an environment variable inherited by drivers, executors and their Python
  children.  ``stop`` uses it to find *all* of them, including the Python process of a killed
  cluster-mode driver, which Spark leaves orphaned (re-parented to init) when the worker kills the
  driver JVM.  Pid files alone cannot find those, and a bare pid could have been reused by now.

Files in the workdir (default ``$TMPDIR/airflow-spark-async-cluster`` or
``$AIRFLOW_SPARK_ASYNC_CLUSTER_DIR``, see :data:`DEFAULT_WORKDIR`): ``cluster.json`` (ports, cluster id,
versions), ``master.pid``, ``worker.pid``, ``master.log``, ``worker.log``, ``conf/``, ``local/`` and
``work/`` -- the worker's work dir, where each cluster-mode driver gets ``work/<driver-id>/stdout`` (the
Python app's stdout *and* stderr) and ``work/<driver-id>/stderr`` (the driver JVM's log4j output).

POSIX only (``spark-class`` is a bash script); needs Java 17+ on ``JAVA_HOME`` or ``PATH``.
"""

from airflow_spark_async_devtools.local_cluster.cli import main
from airflow_spark_async_devtools.local_cluster.cluster import (
    DEFAULT_WORKDIR,
    ClusterStatus,
    LocalClusterError,
    LocalSparkCluster,
    PortInUseError,
)
from airflow_spark_async_devtools.local_cluster.network import HOST

__all__ = [
    "DEFAULT_WORKDIR",
    "HOST",
    "ClusterStatus",
    "LocalClusterError",
    "LocalSparkCluster",
    "PortInUseError",
    "main",
]
