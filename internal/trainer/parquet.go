package trainer

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// ParquetFeaturesKey is the Parquet key-value metadata that names the
// features of a data file's "features" column, in order, comma-separated.
const ParquetFeaturesKey = "modelops.features"

// ParquetRow is one row of a Parquet data file (what `modelctl export`
// writes): the feature vector, the label when there is one, and where the
// row came from.
type ParquetRow struct {
	RequestID string    `parquet:"request_id"`
	Version   int64     `parquet:"version"`
	TimeNanos int64     `parquet:"time_unix_nano"`
	Answer    float64   `parquet:"answer"`
	Features  []float64 `parquet:"features,list"`
	Label     *float64  `parquet:"label,optional"`
}

// NewParquetWriter writes ParquetRows to w, naming the features in the
// file's metadata. Close it to write the footer.
func NewParquetWriter(w io.Writer, features []string) *parquet.GenericWriter[ParquetRow] {
	return parquet.NewGenericWriter[ParquetRow](w, parquet.KeyValueMetadata(ParquetFeaturesKey, strings.Join(features, ",")))
}

func readParquet(path string, f *os.File, features []string, withLabel bool) (*Dataset, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrData, path, err)
	}
	names, ok := pf.Lookup(ParquetFeaturesKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: no %q metadata naming the features (write it with modelctl export)", ErrData, path, ParquetFeaturesKey)
	}
	col := map[string]int{}
	for i, n := range strings.Split(names, ",") {
		col[n] = i
	}
	idx := make([]int, len(features))
	for i, n := range features {
		j, ok := col[n]
		if !ok {
			return nil, fmt.Errorf("%w: %s: feature %q is not in the file", ErrData, path, n)
		}
		idx[i] = j
	}
	r := parquet.NewGenericReader[ParquetRow](f)
	defer r.Close()
	d := &Dataset{Features: features, HasLabel: withLabel}
	buf := make([]ParquetRow, 256)
	line := 0
	for {
		n, err := r.Read(buf)
		for _, pr := range buf[:n] {
			line++
			if len(pr.Features) != len(col) {
				return nil, fmt.Errorf("%w: %s row %d: %d features, the metadata names %d", ErrData, path, line, len(pr.Features), len(col))
			}
			x := make([]float64, len(features))
			for i, j := range idx {
				x[i] = pr.Features[j]
			}
			y := math.NaN()
			switch {
			case pr.Label != nil:
				y = *pr.Label
			case withLabel:
				return nil, fmt.Errorf("%w: %s row %d: no label (export --with-outcomes-only for training data)", ErrData, path, line)
			}
			d.X = append(d.X, x)
			d.Y = append(d.Y, y)
		}
		if errors.Is(err, io.EOF) {
			return d, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrData, path, err)
		}
	}
}
