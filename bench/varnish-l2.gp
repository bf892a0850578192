# Plots of bench/varnish-l2: gnuplot -e "recovery='FILE'; outdir='DIR'" varnish-l2.gp
# (DIR holds req-s-miss.dat and req-s-zipf.dat: size, then median, min,
# max of origin, vmod and http).
set terminal pngcairo size 1100,520 noenhanced font ",10"

set output outdir . "/req-s.png"
set multiplot layout 1,2 title "Requests/s through Varnish (median, min-max)"
set style data histogram
set style histogram errorbars gap 1 lw 1
set style fill solid 0.6 border -1
set ylabel "requests/s"
set yrange [0:*]
set key top right
set title "every request a miss (the miss path)"
plot outdir . "/req-s-miss.dat" using 2:3:4:xtic(1) title "origin", '' using 5:6:7 title "vmod", \
    '' using 8:9:10 title "http"
set title "Zipf 0.99, Varnish's storage a quarter of the data"
plot outdir . "/req-s-zipf.dat" using 2:3:4:xtic(1) title "origin", '' using 5:6:7 title "vmod", \
    '' using 8:9:10 title "http"
unset multiplot

set datafile separator ","
set output outdir . "/recovery.png"
set multiplot layout 1,2 title "After a restart of Varnish (its cache empty)"
set style data linespoints
set xlabel "seconds after the restart"
set key bottom right
set title "requests that reached no origin, each second"
set ylabel "share of requests"
set yrange [0:1.05]
plot for [s in "4K 64K 1M"] for [b in "origin vmod"] recovery \
    using (strcol(1) eq s && strcol(2) eq b ? $3 : 1/0):7 title b . " " . s
set key top right
set title "origin requests, each second"
set ylabel "requests"
set yrange [0:*]
plot for [s in "4K 64K 1M"] for [b in "origin vmod"] recovery \
    using (strcol(1) eq s && strcol(2) eq b ? $3 : 1/0):4 title b . " " . s
unset multiplot
