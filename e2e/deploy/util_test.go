package deploy

import (
	"os"
	"strconv"
)

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func filepathStat(p string) (os.FileInfo, error) { return os.Stat(p) }
