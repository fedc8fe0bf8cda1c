"""Training with Accelerate: options (``config``, plain Python), their checks (``checks``), the epoch loop
(``loop``), checkpoints and resume (``checkpoint``), loss and schedules (``optim``), and the finishing steps
(``finish``: calibration, threshold, one test evaluation, the Hub-ready folder), put together by
``trainer.train``. Import from the modules: this package loads none of them, so the options load without torch."""
