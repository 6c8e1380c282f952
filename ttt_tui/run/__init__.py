"""Running a run: its typed settings, the factory of its model and source, the engines (a thread, a child
process, a follower of someone else's log), and the two ways to run one (``session``: in this process;
``live``: the dashboard's, the model in a child)."""
