"""The command-line applications: each module is one job that `mcucoder` or
`mcucoder-ros` dispatches to.  They are the top of the layering: they import the
libraries (codec, link, nodes, pipeline, control, ...), and nothing imports them
except the two command-line front ends."""
