"""Alarms, the topic they notify, and the operations dashboard.

alarms.py       the Monitoring construct: the alarms that page someone and the dashboard they sit on
dashboard.py    the dashboard's rows, one function per row
metrics.py      the metrics the dashboard and the alarms read
alarm_topic.py  the topic every alarm notifies, and the alarm names its policy admits
"""
