"""mcucoder_ros: adaptive-bitrate learned video compression from MCU cameras to ROS 2."""
import os as _os
import sysconfig as _sysconfig

# Python started in the repository root imports this checkout, which shadows the
# installed copy; only the installed copy holds the generated messages
# (mcucoder_ros.msg, built by cmake/colcon). Look there for what is missing here.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "msg")):
    for _site in {_sysconfig.get_paths()["purelib"], _sysconfig.get_paths()["platlib"]}:
        _installed = _os.path.join(_site, "mcucoder_ros")
        if _os.path.isdir(_os.path.join(_installed, "msg")) and _os.path.realpath(_installed) != _here:
            __path__.append(_installed)
            break
