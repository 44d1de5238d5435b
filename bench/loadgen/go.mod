module chaosbench/loadgen

go 1.26
