"""Benchmarks that measure figures (throughput, engine cost, memory, HNSW recall, soak), never assert
them; ``streamad bench`` and ``streamad bench-engine`` are their command lines (parsing and printing).

- ``throughput``: backbone-only and full-pipeline frames per second on the same frames (a folder or the
  demo stream);
- ``streams``: synthetic (and wandering) descriptor streams, real descriptors from a file, and a
  detector that takes descriptors directly;
- ``engine``: per-frame cost of each engine stage at several window sizes;
- ``memory``: resident memory after a short and a long stream;
- ``hnsw_recall``: recall@1 and query time of the HNSW index against exact search;
- ``soak``: a long run on a wandering stream, memory and latency per interval, and a verdict;
- ``alarms``: the alarm rules on the demo stream at several defect rates (``streamad eval-alarms``).
- ``fuzz``: hypothesis fuzzing of every input edge (decoder, serve TOML, state loader, web page,
  ``process``), counting inputs and failures (``python -m streamad.bench.fuzz``; needs hypothesis).
- ``live_soak``: ``streamad serve`` run live for minutes or hours under injected faults (worker killed
  or hung, network camera lost, subscriber away, save killed), watched from outside, with pass/fail
  checks: figures against the limits of issue 27, which set its exit status (``streamad soak``).

This layer uses ``stream``, ``index``, ``core``, ``vision``, ``testing``, ``evaluation`` and ``adapters``;
never ``streamad.cli``.
"""
