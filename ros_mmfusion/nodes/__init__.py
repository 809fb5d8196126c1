"""ROS 2 nodes of the suite. Each module has a node class and a ``main()`` console entry point."""
