"""Every way a photo gets its label: the labeller Lambda and the paths that feed it.

labeller_function.py   the labeller Lambda, built one way for all its entry points
upload_path.py         S3 ObjectCreated -> SQS (+ DLQ) -> labeller -> endpoint -> labels table
backfill.py            a Distributed Map that labels existing photos in batches
async_label_writer.py  endpoint.mode async, the completion side: responses -> labels table
window.py              endpoint.mode scheduled: the labelling window's state machine and schedules
window_states.py       the window state machine's states
job.py                 the scheduled labelling job: its role and its CreateTrainingJob request
job_code.py            the job's code as one S3 asset and the entry point that runs it
"""
