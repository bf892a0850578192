# bench/compare's plots: throughput and p99 latency, one line per system,
# the median with min-max bars, from summary.csv. Variables (gnuplot -e):
#   summary   summary.csv
#   workload  read or mix10
#   sweep     size (x: object size, 16 connections) or conns (x: connections)
#   connsize  the object size of the connections sweep, in bytes
#   systems   the systems to draw, separated by spaces
#   term      png or svg
#   out       the file to write
#
# summary.csv: 1 workload, 2 size, 3 conns, 4 system, 5 n, 6-8 ops/s
# (median, min, max), 9-11 MB/s, 12 p50, 13-15 p99 (median, min, max), 16 p999.

set datafile separator ","
if (term eq "png") {
	set terminal pngcairo size 1400,600 font "sans,10"
} else {
	set terminal svg size 1400,600 dynamic font "sans,10"
}
set output out
# Ten systems: two line types past gnuplot's cycle of eight, so that the 9th
# and 10th (om-http, nginx) do not take the colours of the 1st and 2nd.
set linetype 9 lc rgb "#8b4513" pt 10
set linetype 10 lc rgb "#708090" pt 12

if (sweep eq "size") {
	cond = "$3 == 16"
	xlab = "object size (16 connections)"
} else {
	cond = sprintf("$2 == %d", connsize)
	xlab = sprintf("connections (%d KiB objects)", connsize / 1024)
}
rows(s) = sprintf("< awk -F, '$1 == \"%s\" && $4 == \"%s\" && %s' '%s'", workload, s, cond, summary)
name = (workload eq "read") ? "read-only" : "10% PUTs"

set multiplot layout 1,2 title sprintf("objmapperd and peers: %s, Zipf keys; median and min-max", name)
set key below horizontal
set grid
set logscale x 2
if (sweep eq "size") {
	set xtics ("1 KiB" 1024, "4 KiB" 4096, "64 KiB" 65536, "1 MiB" 1048576, "16 MiB" 16777216)
	set xrange [700:24000000]
} else {
	set xtics (1, 4, 16)
	set xrange [0.8:20]
}
set xlabel xlab

if (sweep eq "size") {
	set ylabel "MB/s (object bytes of GETs)"
	set logscale y
	plot for [s in systems] rows(s) using 2:9:10:11 with yerrorlines lw 2 title s
} else {
	set ylabel "operations/s"
	unset logscale y
	set yrange [0:*]
	plot for [s in systems] rows(s) using 3:6:7:8 with yerrorlines lw 2 title s
}

set ylabel "p99 latency (us)"
set logscale y
set yrange [*:*]
if (sweep eq "size") {
	plot for [s in systems] rows(s) using 2:13:14:15 with yerrorlines lw 2 title s
} else {
	plot for [s in systems] rows(s) using 3:13:14:15 with yerrorlines lw 2 title s
}
unset multiplot
