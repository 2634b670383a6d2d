import time

from retrain import tracking

tracking.PROCESS_STARTED_AT = time.time()  # a cycle step's per-phase timings (tracking.step_phases) start here
tracking.import_for_step()

from retrain.cli import main  # noqa: E402

main()
