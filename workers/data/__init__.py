"""Data of a trial: synthetic recall tasks generated from a seed."""

from workers.data.synthetic import IGNORE_INDEX, TASKS, Stream, Task, TaskSettings, accuracy, make_task

__all__ = ["IGNORE_INDEX", "TASKS", "Stream", "Task", "TaskSettings", "accuracy", "make_task"]
